"""What a killed run leaves behind, and removing it.

Orphans are never part of a dataset: partial writes of killed writers (temporary files,
unfinished multipart uploads) inside the container or of its own records beside it,
per-task ledger records left beside a compacted ledger (or that belong to runs with other
settings), and a lock whose driver died on this machine. An unfinished run's chunks are
not orphans: rerunning the same job resumes from them. Nor are the parts of a committed
dataset whose ledger was never compacted (a driver stopped between the commit and the
compaction): they are the only record of its objects, so they are compacted, never
deleted (`compact_ledger`).
Nothing of a sibling dataset in the same folder or prefix is ever listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.commit import ledger
from pipelines.commit.lock import (
    existing_record,
    held_error,
    live_holder,
    lock_holder_dead,
    lock_without_record,
    read_lock,
)
from pipelines.commit.records import Sidecars, read_json
from pipelines.errors import OutputError
from pipelines.storage import PartialWrite, Store


@dataclass(frozen=True)
class Orphan:
    """One thing a killed run left behind, as `tile-clean` lists it, and how to remove it."""

    owner: Store                 # the container's store or the one beside it
    name: str                    # the key, or how a partial write is shown (relative to owner)
    why: str
    partial: PartialWrite | None = None

    @property
    def where(self) -> str:
        """The orphan as a user can paste it: its path (as the output was given) or URI
        (trial U: keys relative to the container or its folder were shown)."""
        return f"{self.owner.uri.rstrip('/')}/{self.name}"

    def remove(self) -> None:
        if self.partial is not None:
            self.owner.remove_partial(self.partial)
        else:
            self.owner.delete(self.name)


def find_orphans(store: Store, beside: Store, uri: str) -> list[Orphan]:
    """Every orphan of the output at `uri`, and nothing else; OutputError when there is no
    job record beside it (a mistyped URI, a folder this tool did not write: nothing there
    can be told to be ours), or while a live job holds the output's lock: its temporary
    files are not orphans, nor is its lock (trial U: they were listed as a killed
    writer's). A job stopped before it wrote its record left only its lock: that lock,
    its driver dead, is the one orphan (trial AD: refused as a job 'just started')."""
    names = Sidecars.of(uri)
    left = lock_without_record(beside, uri)
    if left and lock_holder_dead(left):
        return [_lock_orphan(beside, uri, left)]
    existing_record(beside, uri)
    holder = live_holder(beside, uri)
    if holder:
        raise held_error(uri, holder, beside, "nothing was looked at: clean it after that job "
                         "ends", prefix="")
    return partial_writes(store, beside, names) + _stale_ledger(beside, names) \
        + _dead_lock(beside, uri)


def partial_writes(store: Store, beside: Store, names: Sidecars) -> list[Orphan]:
    """The stores' partial writes (their own temporary names, their multipart uploads)
    of objects inside the container, and of exactly the names kept beside it: never of
    a sibling such as `volume.job.json.bak` or `volume.n5.backup`."""
    why = "partial write of a killed writer"
    found = [Orphan(store, p.name, why, p) for p in store.partial_writes()]
    for prefix in names.prefixes():
        found += [Orphan(beside, p.name, why, p) for p in beside.partial_writes(prefix)
                  if names.holds(p.key) and _ours_beside(p.key, names)]
    return found


def _ours_beside(key: str, names: Sidecars) -> bool:
    """Whether a key beside the container may be ours: in the ledger folder only a
    ledger's (trial AQ: a user's file uploading there was aborted as a killed writer's,
    where the same file on disk is never listed)."""
    if key.startswith(names.ledger_root):
        return ledger.is_ledger_key(key[len(names.ledger_root):])
    return True


def _stale_ledger(beside: Store, names: Sidecars) -> list[Orphan]:
    record = read_json(beside, names.job_record)
    keep_parts = _uncompacted(beside, names, record) is not None
    found = []
    for key in beside.list(names.ledger_root):
        if not ledger.is_ledger_key(key[len(names.ledger_root):]):
            continue   # not in a ledger's folder: a user's file is not an orphan (trial U)
        fingerprint = key.split("/")[1]
        current = fingerprint == record.get("fingerprint")
        if current and keep_parts:
            continue   # the only record of the committed dataset's objects
        if "/tasks/" in key and (record.get("status") == "committed" or not current):
            found.append(Orphan(beside, key, "staging record of a finished or superseded run"))
        elif not current:
            found.append(Orphan(beside, key, "ledger of a superseded run"))
    return found


def _uncompacted(beside: Store, names: Sidecars, record: dict) -> str | None:
    """The ledger folder of a committed dataset whose parts were never compacted (the
    driver stopped between the commit and the compaction), else None."""
    if record.get("status") != "committed" or "fingerprint" not in record:
        return None
    base = names.ledger(record["fingerprint"])
    if beside.exists(f"{base}/{ledger.OBJECTS}"):
        return None
    return base if next(iter(beside.list(f"{base}/{ledger.PARTS}/")), None) else None


def uncompacted_ledger(beside: Store, uri: str) -> str | None:
    """Where the committed dataset at `uri` has its ledger only as parts (`compact_ledger`
    compacts it), else None."""
    names = Sidecars.of(uri)
    return _uncompacted(beside, names, read_json(beside, names.job_record))


def compact_ledger(beside: Store, uri: str) -> int:
    """Compact the parts of a committed dataset's ledger into `objects.parquet`, as the
    export does after its commit, once they prove to be the committed objects (the
    digest in the job record); returns the objects recorded. OutputError, changing
    nothing, when they do not."""
    names = Sidecars.of(uri)
    record = read_json(beside, names.job_record)
    base = _uncompacted(beside, names, record)
    if base is None:
        return 0
    objects = ledger.read_parts(beside, base).objects
    assert objects is not None
    if ledger.objects_digest(objects) != record.get("summary", {}).get("digest"):
        raise OutputError(f"{uri}: the ledger's parts under {base} do not match the digest "
                          f"of the committed dataset; they were left as they are")
    ledger.compact(beside, base, objects)
    return len(objects)


def _dead_lock(beside: Store, uri: str) -> list[Orphan]:
    holder = read_lock(beside, uri)
    return [_lock_orphan(beside, uri, holder)] if holder and lock_holder_dead(holder) else []


def _lock_orphan(beside: Store, uri: str, holder: dict) -> Orphan:
    return Orphan(beside, Sidecars.of(uri).lock, f"lock of a dead driver (pid {holder.get('pid')})")


def remove_orphans(store: Store, beside: Store, uri: str) -> int:
    """Remove exactly what `find_orphans` lists; returns how many (refused as it is)."""
    orphans = find_orphans(store, beside, uri)
    ledger_root = Sidecars.of(uri).ledger_root
    for orphan in orphans:
        orphan.remove()
        if orphan.partial is None and orphan.name.startswith(ledger_root):
            # a run's emptied tasks/ folder, a superseded run's folder (trial U: left)
            orphan.owner.remove_empty_folders(orphan.name, ledger_root)
    return len(orphans)


def unlooked_at(store: Store, beside: Store) -> list[str]:
    """A line for each folder of the output or its records that the listings so far could
    not look into (permissions): what it holds, orphans included, was not seen."""
    return [f"{owner.uri}/{folder} ({why}): cannot be read, so what it holds was not looked at"
            for owner in (store, beside) for folder, why in owner.unreadable_folders]
