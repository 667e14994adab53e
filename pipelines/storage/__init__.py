"""Storage: one `Store` interface with local-file and S3 implementations (and an in-memory
one for tests), opened from a URI (`pipelines.storage.uri` is the one URI parser)."""

from __future__ import annotations

from pipelines.storage import uri as uris
from pipelines.storage.base import PartialWrite, Pieces, Store
from pipelines.storage.local import LocalStore
from pipelines.storage.memory import MemoryStore
from pipelines.storage.s3 import S3Options, S3Store, parse_s3_uri

__all__ = ["PartialWrite", "Pieces", "Store", "LocalStore", "MemoryStore", "S3Options", "S3Store", "beside_store",
           "open_store", "parse_s3_uri"]


def open_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store for a path, a file:// URI or s3://bucket/prefix.

    `s3` says how to reach S3 (endpoint, region, profile, retries); defaults if None.
    """
    location = uris.parse(uri)
    if location.scheme == "s3":
        bucket, prefix = parse_s3_uri(uri)
        return S3Store(bucket, prefix, s3 or S3Options())
    return LocalStore(location.path)


def beside_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store of the folder holding `uri`, for files that live next to a container."""
    return open_store(uris.parent(uri), s3)
