"""One conformance class, run against every Store implementation."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

from pipelines.errors import OutputError
from pipelines.storage import LocalStore, MemoryStore, S3Options, S3Store, open_store


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path):
    if request.param == "s3":  # only S3 cases start the moto server
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        return S3Store(bucket, "some/prefix", S3Options(endpoint_url=endpoint))
    return LocalStore(tmp_path / "root") if request.param == "local" else MemoryStore("t")


class TestStoreConformance:
    def test_put_get_round_trip(self, store):
        store.put("a/b/c", b"\x00\x01payload")
        assert store.get("a/b/c") == b"\x00\x01payload" and store.exists("a/b/c")

    def test_put_replaces_whole_object(self, store):
        store.put("k", b"first version, longer")
        store.put("k", b"second")
        assert store.get("k") == b"second"

    def test_missing_key(self, store):
        assert not store.exists("nope")
        with pytest.raises(KeyError):
            store.get("nope")

    def test_list_under_prefix(self, store):
        for key in ["s0/0/0/0", "s0/1/0/0", "s1/0/0/0", "attributes.json"]:
            store.put(key, b"x")
        assert sorted(store.list("s0/")) == ["s0/0/0/0", "s0/1/0/0"]
        assert len(list(store.list())) == 4

    def test_delete(self, store):
        store.put("k", b"x")
        store.delete("k")
        store.delete("k")  # deleting a missing key is fine
        assert not store.exists("k")

    def test_put_is_atomic_for_a_concurrent_reader(self, store):
        """A reader polling a key while it is rewritten sees one whole version or the other."""
        versions = [bytes([1]) * 1_000_000, bytes([2]) * 700_000]
        store.put("k", versions[0])
        seen, done = set(), threading.Event()

        def reader():
            while not done.is_set():
                data = store.get("k")
                seen.add((len(data), data[:1], data[-1:]))

        thread = threading.Thread(target=reader)
        thread.start()
        for n in range(20):
            store.put("k", versions[n % 2])
        done.set()
        thread.join()
        assert seen and seen <= {(len(v), v[:1], v[-1:]) for v in versions}

    def test_put_if_absent_creates_once(self, store):
        assert store.put_if_absent("lock", b"first") is True
        assert store.put_if_absent("lock", b"second") is False
        assert store.get("lock") == b"first"

    def test_pickle_round_trip_of_the_description(self, store):
        clone = pickle.loads(pickle.dumps(store))
        assert type(clone) is type(store) and clone.uri == store.uri


def test_local_put_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    for n in range(5):
        store.put("d/k", bytes([n]) * 100)
    assert os.listdir(tmp_path / "d") == ["k"]


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
    with pytest.raises(OutputError, match="unsupported storage scheme 'gs'"):
        open_store("gs://bucket/x")
    options = S3Options(endpoint_url="http://127.0.0.1:9")
    assert open_store("s3://bkt/a/b.n5/", options) == S3Store("bkt", "a/b.n5", options)
    assert open_store("s3://bkt") == S3Store("bkt", "", S3Options())
