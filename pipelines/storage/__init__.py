"""Storage: one `Store` interface with local-file and in-memory implementations."""

from __future__ import annotations

from urllib.parse import urlparse

from ..errors import OutputError
from .base import Store
from .local import LocalStore
from .memory import MemoryStore

__all__ = ["Store", "LocalStore", "MemoryStore", "open_store"]


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
