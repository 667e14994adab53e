"""Tiles in object stores: a seekable, read-only file over range requests.

tifffile parses a TIFF through any seekable binary file, so a tile on S3 is read the
way a local one is: the headers, then only the bytes of the slices a block needs.
"""

from __future__ import annotations

import io

from pipelines.storage import Store, open_store
from pipelines.storage.uri import split as split_uri

READ_AHEAD = 1 << 20  # bytes per range request: TIFF headers come in many small reads


class RangeFile(io.RawIOBase):
    """A read-only file over one store object, fetching bytes with range requests."""

    def __init__(self, store: Store, key: str):
        self.store, self.key = store, key
        # the request that gives the size gives the version too: a tile check records
        # both (`tiles.identity`) without a request of its own
        self.identity = store.identity(key)
        self.size = self.identity[0]
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        stop = min(self.position + len(buffer), self.size)
        if stop <= self.position:
            return 0
        data = self.store.get_range(self.key, self.position, stop)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_remote(uri: str, s3=None) -> io.BufferedReader:
    """A buffered, seekable binary file for an object URI (s3://bucket/key)."""
    folder, name = split_uri(uri)
    return io.BufferedReader(RangeFile(open_store(folder, s3), name), buffer_size=READ_AHEAD)


def identity_of(opened: io.BufferedReader) -> list:
    """The `Store.identity` of the object a file from `open_remote` reads, as it was opened."""
    raw = opened.raw
    assert isinstance(raw, RangeFile)
    return list(raw.identity)
