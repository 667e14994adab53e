"""Storage: one `Store` interface with local-file, S3 and in-memory implementations."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from ..errors import OutputError
from .base import Store
from .local import LocalStore
from .memory import MemoryStore
from .s3 import S3Options, S3Store, parse_s3_uri

__all__ = ["Store", "LocalStore", "MemoryStore", "S3Options", "S3Store", "beside_store",
           "open_store", "parse_s3_uri"]


def open_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store for a path, a file:// URI, s3://bucket/prefix or memory://name.

    `s3` says how to reach S3 (endpoint, region, profile, retries); defaults if None.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return LocalStore(parsed.path if parsed.scheme else uri)
    if parsed.scheme == "s3":
        bucket, prefix = parse_s3_uri(uri)
        return S3Store(bucket, prefix, s3 or S3Options())
    if parsed.scheme == "memory":
        return MemoryStore(parsed.netloc)
    raise OutputError(
        f"{uri}: unsupported storage scheme {parsed.scheme!r}; use a path, file:// or s3:// URI"
    )


def beside_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store of the folder holding `uri`, for files that live next to a container."""
    parsed = urlparse(uri)
    parent = str(PurePosixPath(parsed.path if parsed.scheme else uri).parent)
    return open_store(f"{parsed.scheme}://{parsed.netloc}{parent}" if parsed.scheme else parent, s3)
