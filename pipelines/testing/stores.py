"""The conformance tests every Store implementation must pass, shipped with the package
so a new store (or a user's own) is checked by the same tests as ours. Needs pytest."""

from __future__ import annotations

import pickle
import threading
import time

import pytest


class StoreConformance:
    """What every `pipelines.storage.Store` must do. Subclass it in a test module that
    defines a `store` fixture returning a fresh, empty store (pytest collects the
    subclass when its name starts with "Test"), as zarr-python's `zarr.testing` does."""

    def test_put_get_round_trip(self, store):
        store.put("a/b/c", b"\x00\x01payload")
        assert store.get("a/b/c") == b"\x00\x01payload" and store.exists("a/b/c")

    def test_put_of_pieces_stores_them_joined(self, store):
        """An object given as `Pieces` (a shard's chunks and index) is stored as their bytes
        in order; empty pieces add nothing."""
        from pipelines.storage import Pieces

        parts = [b"\x00chunk one", b"", bytes(range(256)) * 40, b"index\xff"]
        store.put("s/0/0/0", Pieces(parts))
        assert store.get("s/0/0/0") == b"".join(parts)

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

    def test_sizes_under_prefix(self, store):
        """One listing with sizes: the keys `list` gives and what `size` says of each."""
        for key, data in [("s0/0/0/0", b"abc"), ("s0/1/0/0", b""), ("s0/1/2", b"12345"),
                          ("s01/0", b"x"), ("s1/0/0/0", b"xy"), ("attributes.json", b"{}")]:
            store.put(key, data)
        assert store.sizes("s0/") == {"s0/0/0/0": 3, "s0/1/0/0": 0, "s0/1/2": 5}
        assert store.sizes("s0") == {"s0/0/0/0": 3, "s0/1/0/0": 0, "s0/1/2": 5, "s01/0": 1}
        assert store.sizes() == {key: store.size(key) for key in store.list()}
        assert store.sizes("nothing/") == {}

    def test_identity_is_the_size_and_a_version_that_follows_the_bytes(self, store):
        """What resumes and reused registrations tell changed tile files by."""
        store.put("k", b"abc")
        size, version = store.identity("k")
        assert size == 3 and store.identity("k") == (size, version)
        time.sleep(0.05)   # beyond a coarse file system clock's tick
        store.put("k", b"xyz")   # the same size, other bytes
        if version:   # a store that keeps versions (files, S3) tells the two apart
            assert store.identity("k") != (size, version)
        with pytest.raises(KeyError):
            store.identity("missing")

    def test_delete(self, store):
        store.put("k", b"x")
        store.delete("k")
        store.delete("k")  # deleting a missing key is fine
        assert not store.exists("k")

    def test_put_is_atomic_for_a_concurrent_reader(self, store):
        """A reader polling a key while it is rewritten sees one whole version or the other."""
        versions = [bytes([1]) * 1_000_000, bytes([2]) * 700_000]
        store.put("k", versions[0])
        seen, done, failed = set(), threading.Event(), []

        def reader():
            try:
                while not done.is_set():
                    data = store.get("k")
                    seen.add((len(data), data[:1], data[-1:]))
            except Exception as e:   # a reader that died must fail the test, not pass it
                failed.append(e)

        thread = threading.Thread(target=reader)
        thread.start()
        for n in range(20):
            store.put("k", versions[n % 2])
        done.set()
        thread.join()
        assert not failed, failed   # moto tore a read once: S3Store.get reads it again
        assert seen and seen <= {(len(v), v[:1], v[-1:]) for v in versions}

    def test_put_if_absent_creates_once(self, store):
        assert store.put_if_absent("lock", b"first") is True
        assert store.put_if_absent("lock", b"second") is False
        assert store.get("lock") == b"first"

    def test_pickle_round_trip_of_the_description(self, store):
        clone = pickle.loads(pickle.dumps(store))
        assert type(clone) is type(store) and clone.uri == store.uri
