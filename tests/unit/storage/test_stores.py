"""The Store conformance tests on the local and memory stores, and local-store details."""

from __future__ import annotations

import os
import zlib

import pytest

from pipelines.errors import OutputError
from pipelines.storage import LocalStore, MemoryStore, Pieces, S3Options, S3Store, open_store
from pipelines.storage import local as local_module
from pipelines.storage.checksum import crc32
from pipelines.testing.stores import StoreConformance


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    return LocalStore(tmp_path / "root") if request.param == "local" else MemoryStore("t")


class TestLocalAndMemoryStores(StoreConformance):
    """The conformance tests on a local folder and in memory (S3: tests/integration/test_s3.py)."""


def test_local_put_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    for n in range(5):
        store.put("d/k", bytes([n]) * 100)
    assert os.listdir(tmp_path / "d") == ["k"]


def test_local_folders_made_for_a_lock_go_when_empty_and_only_those(tmp_path):
    (tmp_path / "kept").mkdir()
    store = LocalStore(tmp_path / "kept" / "a" / "b")
    assert store.put_if_absent("lock", b"x")
    store.delete("lock")
    store.remove_made_folders()
    assert os.listdir(tmp_path) == ["kept"] and not os.listdir(tmp_path / "kept")
    store = LocalStore(tmp_path / "kept" / "a" / "b")
    assert store.put_if_absent("lock", b"x")
    (tmp_path / "kept" / "a" / "other").write_bytes(b"another job's")
    store.delete("lock")
    store.remove_made_folders()   # b is empty; a is not
    assert os.listdir(tmp_path / "kept" / "a") == ["other"]


def test_a_lock_is_taken_when_another_jobs_release_removes_the_new_folder_meanwhile(tmp_path,
                                                                                  monkeypatch):
    """Review I: job B found the folder job A had just made; A, releasing its lock,
    removed it before B wrote its lock there, and B failed with FileNotFoundError."""
    made = LocalStore._make_folder
    calls = []

    def then_removed(self, folder):
        made(self, folder)
        calls.append(folder)
        if len(calls) == 1:
            folder.rmdir()   # A's release, between B's look and B's write
    monkeypatch.setattr(LocalStore, "_make_folder", then_removed)
    store = LocalStore(tmp_path / "shared" / "new")
    assert store.put_if_absent("v.n5.job.lock", b"B") and store.get("v.n5.job.lock") == b"B"
    assert len(calls) == 2


@pytest.mark.parametrize("count", [1, 3, local_module._IOV_MAX + 5])
def test_local_put_writes_every_piece_when_the_system_writes_less(tmp_path, monkeypatch, count):
    """write() and writev() may write fewer bytes than given (signals, pipes, quotas): the
    rest follows in order, also across more pieces than one writev() takes."""
    parts = [bytes([n % 251]) * (n % 7 + 4) for n in range(count)] + [b"the last piece"]
    calls = []
    real_write, real_writev = os.write, os.writev

    def short_write(fd, data):
        calls.append("write")
        return real_write(fd, memoryview(data)[:5])

    def short_writev(fd, buffers):
        calls.append(len(buffers))
        assert len(buffers) <= local_module._IOV_MAX
        first = memoryview(buffers[0])   # a prefix of what was given: 3 bytes, or up to 2 pieces
        return real_writev(fd, [first[:3]] if first.nbytes > 3 else [first, *buffers[1:2]])

    monkeypatch.setattr(os, "write", short_write)
    monkeypatch.setattr(os, "writev", short_writev)
    store = LocalStore(tmp_path)
    store.put("k", Pieces(parts))
    assert store.get("k") == b"".join(parts)
    assert len(calls) > 1   # it did have to continue
    store.put("one", b"a single buffer, written five bytes at a time")
    assert store.get("one") == b"a single buffer, written five bytes at a time"


def test_local_put_refuses_a_write_of_nothing_instead_of_looping(tmp_path, monkeypatch):
    """A write() that writes nothing and raises nothing (not seen for regular files) ends
    the put with an error, leaving no object and no temporary file behind."""
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    store = LocalStore(tmp_path)
    with pytest.raises(OSError, match="no byte of 5"):
        store.put("d/k", b"hello")
    assert not store.exists("d/k") and os.listdir(tmp_path / "d") == []


def test_crc32_of_pieces_is_that_of_their_bytes():
    parts = [b"", b"abc", bytes(range(256)) * 9, b"z"]
    assert crc32(Pieces(parts)) == crc32(b"".join(parts)) == zlib.crc32(b"".join(parts))
    assert Pieces(parts) == b"".join(parts) and len(Pieces(parts)) == len(b"".join(parts))
    assert Pieces(parts) != b"abc"


def test_local_rejects_escaping_keys(tmp_path):
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put("../evil", b"x")


def test_local_check_writable_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        LocalStore(tmp_path / "file/out.n5").check_writable()


def test_open_store_schemes(tmp_path):
    assert open_store(str(tmp_path)) == LocalStore(tmp_path)
    assert open_store(f"file://{tmp_path}") == LocalStore(tmp_path)
    # the same rules as a job file's file:// URIs (one parser): decoded, this machine only
    assert open_store(f"file://localhost{tmp_path}/my%20run") == LocalStore(tmp_path / "my run")
    with pytest.raises(OutputError, match="names a path on this machine"):
        open_store("file://otherhost/data/v.n5")
    with pytest.raises(OutputError, match="names an absolute path"):
        open_store("file:rel/v.n5")
    with pytest.raises(OutputError, match="unsupported storage scheme 'gs'"):
        open_store("gs://bucket/x")
    options = S3Options(endpoint_url="http://127.0.0.1:9")
    assert open_store("s3://bkt/a/b.n5/", options) == S3Store("bkt", "a/b.n5", options)
    assert open_store("s3://bkt") == S3Store("bkt", "", S3Options())


def test_a_full_disk_names_the_folder_and_leaves_no_temporary(tmp_path, monkeypatch):
    """Trial M: "OSError: [Errno 28] No space left on device" named no folder (a write's
    error carries no file name), where a read-only folder was named."""
    import errno

    import pipelines.storage.local as local
    from pipelines.storage import LocalStore

    def full(fd, parts):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(local, "_write_all", full)
    store = LocalStore(str(tmp_path / "out"))
    with pytest.raises(OSError, match=r"No space left on device: '.*/out/c0/s0/0'") as raised:
        store.put("c0/s0/0/0", b"data")
    assert raised.value.errno == errno.ENOSPC
    assert not list((tmp_path / "out").rglob("*.partial")) and not (tmp_path / "out/c0/s0/0/0").exists()


@pytest.mark.parametrize("uri", ["s3://demo/x/../v.n5", "s3://demo//x/volume.n5", "s3://demo/x//v.n5",
                                 "s3://demo/./v.n5"])
def test_an_s3_uri_with_empty_or_dot_parts_is_refused_naming_what_was_meant(uri):
    """Trial M: s3://demo/x/../v.n5 was written under the literal key "x/../v.n5", which the
    printed tensorstore command did not find; s3://demo//x/… was written to x/… and
    reported as given."""
    from pipelines.errors import OutputError
    from pipelines.storage import open_store
    with pytest.raises(OutputError, match=r"an S3 key has no empty, '\.' or '\.\.' parts; write the "
                                          r"prefix as it is meant \(s3://demo/"):
        open_store(uri)


@pytest.mark.parametrize("uri", ["s3://bkt/q/v.n5?x=1", "s3://bkt/q/v.n5#a"])
def test_an_s3_uri_with_a_query_or_fragment_is_refused(uri):
    """Trial O: "?x=1" was taken for a query: the data went to q/v.n5 and the lock and job
    record to "q/v.n5?x=1.job.*", so two runs (?a, ?b) wrote one container at once."""
    from pipelines.errors import OutputError
    from pipelines.storage import open_store
    with pytest.raises(OutputError, match=r"an S3 URI here has no '\?' or '#'"):
        open_store(uri)


@pytest.mark.parametrize("uri, meant", [("s3://bkt/../v.n5", "s3://bkt/v.n5"), ("s3://bkt/x/..", None)])
def test_the_s3_uri_a_refusal_suggests_is_valid(uri, meant):
    """Trial O: s3://bkt/../v.n5 suggested itself, s3://bkt/x/.. suggested s3://bkt/."""
    from pipelines.errors import OutputError
    from pipelines.storage import open_store
    with pytest.raises(OutputError) as refused:
        open_store(uri)
    assert (f"as it is meant ({meant})" in str(refused.value)) if meant else \
        str(refused.value).endswith("as it is meant")


def test_an_s3_uri_with_a_trailing_slash_is_still_taken():
    from pipelines.storage import open_store
    assert open_store("s3://demo/x/v.n5/").uri == "s3://demo/x/v.n5"
