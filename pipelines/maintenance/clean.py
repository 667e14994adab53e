"""What a killed run leaves behind, and removing it.

Orphans are never part of a dataset: partial writes of killed writers (temporary files,
unfinished multipart uploads), per-task ledger records that were never compacted into
the committed ledger (or that belong to runs with other settings), and a lock whose
driver died on this machine. An unfinished run's chunks are not orphans: rerunning the
same job resumes from them.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pipelines.commit.publish import lock_holder_dead, read_json
from pipelines.storage import Store


def find_orphans(store: Store, beside: Store, uri: str) -> list[tuple[Store, str, str]]:
    """(store, key or description, why) for every orphan of the output at `uri`."""
    name = PurePosixPath(uri).name
    found = [(store, item, "partial write of a killed writer") for item in store.abandoned()]
    found += [(beside, item, "partial write of a killed writer") for item in beside.abandoned()
              if item.startswith(f"{name}.")]
    record = read_json(beside, f"{name}.job.json")
    for key in beside.list(f"{name}.job/"):
        fingerprint = key.split("/")[1] if key.count("/") >= 2 else ""
        current = fingerprint == record.get("fingerprint")
        if "/tasks/" in key and (record.get("status") == "committed" or not current):
            found.append((beside, key, "staging record of a finished or superseded run"))
        elif not current:
            found.append((beside, key, "ledger of a superseded run"))
    lock = read_json(beside, f"{name}.job.lock")
    if lock and lock_holder_dead(lock):
        found.append((beside, f"{name}.job.lock", f"lock of a dead driver (pid {lock.get('pid')})"))
    return found


def remove_orphans(store: Store, beside: Store, uri: str) -> int:
    """Remove every orphan `find_orphans` lists; returns how many."""
    removed = store.remove_abandoned() + (beside.remove_abandoned() if beside != store else 0)
    for owner, key, why in find_orphans(store, beside, uri):
        if not why.startswith("partial write"):
            owner.delete(key)
            removed += 1
    return removed

