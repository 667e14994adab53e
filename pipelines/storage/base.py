"""The one storage interface every reader and writer in the pipeline uses.

Keys are '/'-separated paths relative to the store's root, e.g. "c0/s0/1/2/3".
A Store object is a small description (a root path or URI) that pickles cheaply;
clients and file handles are opened lazily where it is used, never pickled.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipelines.errors import cause


@dataclass(frozen=True)
class PartialWrite:
    """What a killed writer left of one put: never visible under a key, but taking space."""

    key: str    # the object it was writing, relative to the store
    name: str   # how to show it to a user, relative to the store (the temporary file's
    # key, or the upload's key and its start)
    token: str  # what `remove_partial` needs (a temporary file's key, an upload id)


class Pieces:
    """One object's bytes as consecutive pieces — a shard's encoded chunks, then its index;
    an N5 chunk's header, then its payload — which `Store.put` writes one after another
    instead of first joining them into one more copy (≈ 20 ms of a worker per 140 MiB
    shard, benchmarks/PROFILE.md). `len()` is the
    object's size and `bytes()` joins the pieces, for code that needs one buffer. `crc32`
    is zlib's crc32 of the joined bytes when their maker summed it on the way (see
    `pipelines.storage.checksum`), else None."""

    __slots__ = ("parts", "_size", "crc32")

    def __init__(self, parts: Iterable[bytes], crc32: int | None = None) -> None:
        self.parts = tuple(parts)
        self._size = sum(len(p) for p in self.parts)
        self.crc32 = crc32

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Pieces, bytes, bytearray)):
            return len(self) == len(other) and bytes(self) == bytes(other)
        return NotImplemented

    # equal to bytes, which hash by value: no hash that could disagree with them
    __hash__ = None  # type: ignore[assignment]


class Store(ABC):
    """Key → bytes storage with atomic puts."""

    @abstractmethod
    def put(self, key: str, data: bytes | Pieces) -> None:
        """Store `data` under `key` atomically: readers see the old object or the new, never part."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under `key`; raises KeyError when there are none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with `prefix`, in no particular order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create `key` only if nothing is stored there, atomically; False if something is.
        (Whole `bytes` only: it is used for small documents, never for `Pieces`.)"""

    def delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if it still holds `expected`; True if this call removed it.

        This default reads, compares and deletes, which a store without a conditional
        delete cannot do atomically; LocalStore and S3Store override it atomically."""
        try:
            if self.get(key) != expected:
                return False
        except KeyError:
            return False
        self.delete(key)
        return True

    def partial_writes(self, prefix: str = "") -> builtins.list[PartialWrite]:
        """Partial writes a killed writer left of objects whose keys start with `prefix`."""
        return []

    def remove_partial(self, partial: PartialWrite) -> None:  # noqa: B027  (optional: nothing to remove by default)
        """Remove one partial write `partial_writes` listed (gone already is fine)."""

    def remove_made_folders(self) -> None:  # noqa: B027  (optional: stores without folders)
        """Remove the folders `put_if_absent` created for its objects where they are empty
        now, deepest first (a lock released by a run that wrote nothing else)."""

    def remove_empty_folders(self, key: str, below: str) -> None:  # noqa: B027  (optional: stores without folders)
        """Remove the folders holding the deleted `key` that are empty now, deepest first,
        up to but not including the folder `below` (a prefix of `key` ending in '/')."""

    @property
    def unreadable_folders(self) -> tuple[tuple[str, str], ...]:
        """(folder, why) of each folder (a key ending in '/', "" for the root) the last
        listing that reached it could not look into: what it holds was not listed (stores
        without folders have none)."""
        return ()

    def size(self, key: str) -> int:
        """Bytes stored under `key`; KeyError when there are none."""
        return len(self.get(key))

    def identity(self, key: str) -> tuple[int, str]:
        """What tells a changed object under `key` from the same one without reading it:
        (size, version), the version being what the store keeps of one (a file's
        modification time, an S3 ETag) or "" where it keeps none; KeyError when there is
        no object. One request where `size` is one (S3: the same HEAD)."""
        return self.size(key), ""

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key that starts with `prefix` and its size, from one listing where the
        store gives sizes with it (a local folder walk, S3's ListObjectsV2)."""
        return {key: self.size(key) for key in self.list(prefix)}

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the object under `key` (readers of large tiles use this)."""
        return self.get(key)[start:stop]

    @abstractmethod
    def check_writable(self, what: str = "output.uri") -> None:
        """Raise OutputError naming the location if objects cannot be written there; the
        message begins with `what` (the job file's key, or what a command writes there)."""

    def explain(self, err: Exception) -> str:
        """What went wrong with a request to this store, in words a user can act on (S3:
        the endpoint, the bucket, the credentials, never echoing them)."""
        return cause(err)

    def check_may_write(self, what: str = "output.uri") -> None:
        """What `check_writable` checks without writing anything (the dry run): by default
        that the store answers (`check_reachable`)."""
        self.check_reachable(what)

    def check_reachable(self, what: str = "") -> None:  # noqa: B027  (a local or memory store always is)
        """Raise OutputError, in one line beginning with `what` when given, if the storage
        cannot be reached at all (a remote endpoint that is down, `NoAnswer`)
        or refuses (a missing bucket, denied credentials); for commands that only read
        (verify, clean, the dry run)."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """Where this store lives, as a user would write it."""
