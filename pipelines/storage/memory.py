"""An in-process store for tests and planning experiments."""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.storage.base import Pieces, Store


class MemoryStore(Store):
    """Objects in a dict. Pickling copies the contents, so it is for one process only."""

    def __init__(self, name: str = "memory"):
        self.name = name
        self.objects: dict[str, bytes] = {}

    @property
    def uri(self) -> str:
        return f"memory://{self.name}"

    def put(self, key: str, data: bytes | Pieces) -> None:
        self.objects[key] = bytes(data)  # one assignment: atomic for readers

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key in self.objects:  # one process, tests only: no other writer can interleave
            return False
        self.objects[key] = bytes(data)
        return True

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([k for k in self.objects if k.startswith(prefix)])

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {k: len(v) for k, v in self.objects.items() if k.startswith(prefix)}

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def check_writable(self, what: str = "output.uri") -> None:
        return None
