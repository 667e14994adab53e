"""Storage: one `Store` interface with local-file and in-memory implementations."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from ..errors import OutputError
from .base import Store
from .local import LocalStore
from .memory import MemoryStore

__all__ = ["Store", "LocalStore", "MemoryStore", "beside_store", "open_store"]


def open_store(uri: str) -> Store:
    """The store for a path, a file:// URI or memory://name."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return LocalStore(parsed.path if parsed.scheme else uri)
    if parsed.scheme == "memory":
        return MemoryStore(parsed.netloc)
    raise OutputError(
        f"{uri}: unsupported storage scheme {parsed.scheme!r}; use a path or file:// URI"
    )


def beside_store(uri: str) -> Store:
    """The store of the folder holding `uri`, for files that live next to a container."""
    parsed = urlparse(uri)
    parent = str(PurePosixPath(parsed.path if parsed.scheme else uri).parent)
    return open_store(f"{parsed.scheme}://{parsed.netloc}{parent}" if parsed.scheme else parent)
