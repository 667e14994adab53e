"""The Store conformance tests on the local and memory stores, and local-store details."""

from __future__ import annotations

import os

import pytest

from pipelines.errors import OutputError
from pipelines.storage import LocalStore, MemoryStore, S3Options, S3Store, open_store
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
