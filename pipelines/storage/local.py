"""A store in a folder of the local (or a shared cluster) filesystem."""

from __future__ import annotations

import builtins
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import OutputError
from pipelines.storage.base import PartialWrite, Pieces, Store

TEMP_SUFFIX = ".partial"
# The exact name `LocalStore._temporary` gives a put's temporary file: anything else that
# ends in ".partial" (a user's download, a video) is a file like any other.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{32}" + re.escape(TEMP_SUFFIX))
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_IOV_MAX = 1024   # buffers per writev(); POSIX guarantees at least 16, Linux takes 1024


class LocalStore(Store):
    """Objects are files under `root`; a put writes a temporary file beside the target
    and renames it over the target, which POSIX makes atomic."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.made_folders: builtins.list[Path] = []   # by put_if_absent, deepest first
        self._unreadable: dict[str, str] = {}   # folder key → why a listing could not look in

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes | Pieces) -> None:
        path = self._path(key)
        tmp = self._temporary(path)
        try:
            try:
                fd = os.open(tmp, _NEW_FILE, 0o666)
            except FileNotFoundError:   # a new folder: made when needed, not checked per put
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _NEW_FILE, 0o666)
            try:
                _write_all(fd, data.parts if isinstance(data, Pieces) else (data,))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.filename is None and e.errno is not None:   # a write's error names no file
                raise type(e)(e.errno, e.strerror, str(path.parent)) from None
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        # The content is written to a temporary file first and then linked under the key:
        # link() fails if the key exists, so the object appears whole or not at all.
        path = self._path(key)
        self._make_folder(path.parent)
        tmp = self._temporary(path)
        try:
            try:
                tmp.write_bytes(data)
            except FileNotFoundError:   # another job's lock release removed the new folder
                self._make_folder(path.parent)   # between our look and our write (review I)
                tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _make_folder(self, folder: Path) -> None:
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        if missing:
            missing[0].mkdir(parents=True, exist_ok=True)
            self.made_folders.extend(missing)

    def remove_made_folders(self) -> None:
        # a run stopped before it wrote anything left the output's new parent folders
        # (trial M); rmdir() removes only what is still empty
        for folder in self.made_folders:
            try:
                folder.rmdir()
            except OSError:   # holds something (this run's record, another job's files)
                break
        self.made_folders.clear()

    def remove_empty_folders(self, key: str, below: str) -> None:
        stop = self._path(below.rstrip("/")) if below.rstrip("/") else self.root
        folder = self._path(key).parent
        while stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:   # holds something else (or is gone): so do its parents
                break
            folder = folder.parent

    def delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        # rename() moves one inode: of concurrent callers exactly one gets the object.
        path = self._path(key)
        taken = self._temporary(path)
        try:
            os.rename(path, taken)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            if taken.read_bytes() == expected:
                return True
            try:  # not the object we meant (someone replaced it): put it back
                os.link(taken, path)
            except FileExistsError:
                pass
            return False
        finally:
            taken.unlink(missing_ok=True)

    @staticmethod
    def _temporary(path: Path) -> Path:
        """A unique temporary name beside `path` (two attempts of a task may write at once)."""
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def identity(self, key: str) -> tuple[int, str]:
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None
        return info.st_size, str(info.st_mtime_ns)

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(max(0, stop - start))
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        return (key for key, _ in self._objects(prefix))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        # One walk, a stat per file from its directory entry: asking `size` key by key
        # (pathlib, key checks) cost 12.2 µs per object, 22 s of the commit and resume
        # checks of a 1.1-million-object export (BENCHMARKS.md, "A million blocks").
        return {key: entry.stat().st_size for key, entry in self._objects(prefix)}

    def _objects(self, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        """(key, directory entry) of every object whose key starts with `prefix`."""
        for key, entry in self._entries(prefix):
            if _target_of(key) is None and key.startswith(prefix):
                yield key, entry

    def _entries(self, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        """(key, directory entry) of every file below the folder `prefix` names, temporary
        files included, descending only into folders whose keys can start with `prefix`
        (the store beside a container is its parent folder: sibling datasets must not be
        walked). As os.walk: symbolic links to folders are not followed."""
        start = prefix.rpartition("/")[0]
        if not (self.root / start).is_dir():
            return
        folders = [(str(self.root / start), f"{start}/" if start else "")]
        while folders:
            path, base = folders.pop()
            try:
                with os.scandir(path) as entries:
                    found = list(entries)
                self._unreadable.pop(base, None)   # readable now
            except FileNotFoundError:   # removed while walking: skipped, as os.walk does
                continue
            except OSError as e:   # unreadable: skipped too, but kept to be told (trial U:
                # tile-clean missed the orphans in a folder it could not read, silently)
                self._unreadable[base] = e.strerror or type(e).__name__
                continue
            for entry in found:
                key = base + entry.name
                try:
                    folder, linked = entry.is_dir(), entry.is_symlink()
                except OSError:   # its type cannot be read (/proc/1/cwd): skipped, not a traceback
                    continue
                if not folder:
                    yield key, entry
                elif not linked and _may_hold(f"{key}/", prefix):
                    folders.append((entry.path, f"{key}/"))

    @property
    def unreadable_folders(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self._unreadable.items()))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def partial_writes(self, prefix: str = "") -> builtins.list[PartialWrite]:
        found = []
        for name, _ in self._entries(prefix):
            target = _target_of(name)
            if target is not None and target.startswith(prefix):
                found.append(PartialWrite(target, name, name))
        return sorted(found, key=lambda p: p.name)

    def remove_partial(self, partial: PartialWrite) -> None:
        (self.root / partial.token).unlink(missing_ok=True)

    def check_writable(self, what: str = "output.uri") -> None:
        _probe(self._deepest_writable(what), what)

    def check_may_write(self, what: str = "output.uri") -> None:
        self._deepest_writable(what)

    def _deepest_writable(self, what: str) -> Path:
        """The deepest folder of the root's path that exists (where creating the root must
        start), OutputError unless it is a folder this process may write in."""
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise OutputError(f"{what}: {existing} exists and is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
            raise OutputError(f"{what}: cannot write under {existing} "
                              f"({'a read-only file system' if read_only else 'permission denied'})")
        return existing


def _probe(folder: Path, what: str) -> None:
    """Create, hard-link and remove a file in `folder`, as taking the lock does: access()
    passes for root on /sys and /proc, where creating a file still fails, and some
    file systems have no hard links."""
    # temporary names as a put's (`LocalStore._temporary`): listings skip them, so a kill
    # in between leaves nothing a commit could take for a user's file (review K), and
    # tile-clean removes them as a killed writer's
    probe = LocalStore._temporary(folder / "write-probe")
    linked = LocalStore._temporary(folder / "write-probe-link")
    try:
        probe.write_bytes(b"")
        os.link(probe, linked)
    except OSError as e:
        raise OutputError(f"{what}: files cannot be created under {folder} "
                          f"({e.strerror or type(e).__name__}); choose a folder on a disk "
                          f"or a shared file system") from None
    finally:
        for path in (linked, probe):
            try:
                path.unlink(missing_ok=True)
            except OSError:  # nothing was created there
                pass


def _write_all(fd: int, parts: tuple) -> None:
    """Write every byte of `parts`, in order, to `fd`: one buffer with write(), several
    with writev() (a shard's pieces go to the file without being joined first). Both may
    write less than asked; the rest follows."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    first = 0
    while first < len(views):
        batch = views[first:first + _IOV_MAX]
        done = os.write(fd, batch[0]) if len(batch) == 1 else os.writev(fd, batch)
        if done == 0:   # not for regular files, where errors raise; never loop on it
            raise OSError(f"no byte of {sum(v.nbytes for v in batch)} could be written")
        while done:   # drop what was written: whole views, then the front of the next
            size = views[first].nbytes
            if done < size:
                views[first] = views[first][done:]
                break
            done -= size
            first += 1


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether keys under `folder` (ending in '/') can start with `prefix`."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _target_of(key: str) -> str | None:
    """The key a temporary file `…/.{name}.{uuid}.partial` (`LocalStore._temporary`) was
    being written for; None when `key` is not one of those names."""
    folder, _, name = key.rpartition("/")
    match = _TEMPORARY.fullmatch(name)
    if match is None:
        return None
    return f"{folder}/{match['target']}" if folder else match["target"]
