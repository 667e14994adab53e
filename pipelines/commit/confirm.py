"""Are the objects the ledger records still in the output, as they were written?

A resume trusts the ledger's record of finished blocks, and a commit writes metadata over
the recorded objects. Between runs (or while a store restarts) objects may vanish or be
damaged, so both first confirm them: one listing of the whole container with sizes (not
one request per object; it also shows what else the container holds), and, with
`resume.verify = "checksum"`, every recorded object read back and its crc32 compared.
What does not match is named, and a resume runs its blocks again; the commit refuses
rather than publish a dataset with holes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.commit.documents import container_keys
from pipelines.commit.ownership import is_ours_by_name
from pipelines.errors import OutputError, RunFailed, TileError
from pipelines.plan import ExportPlan, tile_paths
from pipelines.storage import Store
from pipelines.tiles.identity import file_identities, identities_digest, same_identity


@dataclass(frozen=True)
class Changed:
    """A recorded object that is not in the output as recorded."""

    key: str
    recorded: int          # bytes
    found: int | None      # bytes stored now; None when missing

    def describe(self) -> str:
        if self.found is None:
            return f"{self.key} (recorded {self.recorded} bytes, now missing)"
        if self.found == self.recorded:
            return f"{self.key} (its crc32 differs from the recorded one)"
        return f"{self.key} (recorded {self.recorded} bytes, now {self.found})"


def changed_objects(objects: pa.Table, store: Store, listed: dict[str, int],
                    mode: str = "size") -> list[Changed]:
    """The written objects of `objects` (ledger rows) that are missing from `listed` (the
    container's listing, key → size), of another size, or (mode "checksum") of another
    crc32 than recorded."""
    written = objects.filter(objects["written"]) if len(objects) else objects
    keys, sizes = written["key"].to_pylist(), written["nbytes"].to_pylist()
    changed = [Changed(k, n, listed.get(k)) for k, n in zip(keys, sizes) if listed.get(k) != n]
    if mode == "checksum":
        bad = {c.key for c in changed}
        for key, size, crc in zip(keys, sizes, written["crc32"].to_pylist()):
            if key not in bad and _crc(store, key) != crc:
                changed.append(Changed(key, size, size))
    return changed


def resume_listing(store: Store) -> dict[str, int]:
    """The whole container's listing (key → size) when a run resumes; OutputError before
    any work when it holds a file whose name none of ours has (`is_ours_by_name`): the
    commit would refuse it after all the work (review K)."""
    listed = store.sizes()
    strangers = sorted(k for k in listed if not is_ours_by_name(k))
    if strangers:
        raise OutputError(f"output.uri: {store.uri} holds {len(strangers)} file(s) this job "
                          f"did not write (e.g. {strangers[0]}); move them out of the dataset "
                          f"and run the same command again (nothing was computed)")
    return listed


def check_before_commit(plan: ExportPlan, objects: pa.Table, store: Store) -> None:
    """RunFailed, publishing nothing, unless the container holds every recorded object as
    recorded and nothing else but the metadata the commit writes: one listing of it all."""
    listed = store.sizes()   # the whole container: the objects' sizes, and anything else
    changed = changed_objects(objects, store, listed)
    if changed:   # e.g. a store that lost objects while the run went on
        raise RunFailed(f"commit refused, nothing was published: {summary(changed, len(objects))}; "
                        f"run the same command again to compute them again")
    foreign = foreign_keys(listed, objects, container_keys(plan))
    if foreign:   # trial U: committed, then tile-verify failed the dataset for them
        raise RunFailed(f"commit refused, nothing was published: {store.uri} holds "
                        f"{len(foreign)} file(s) this job did not write (e.g. {foreign[0]}); "
                        f"move them out of the dataset and run the same command again "
                        f"(every block is recorded: it only commits)")


# the refusal's words, which a failed job record keeps (`tile-verify` tells it by them)
TILES_CHANGED = "tile files changed while the run read them"


def check_tiles_unchanged(plan: ExportPlan, began: Mapping[str, Any] | None = None) -> None:
    """TileError, publishing nothing, when a tile file's identity (size and modification
    time; size and ETag on S3) is not the one the plan took: its blocks may mix the old
    pixels and the new (trial AM: a tile rewritten while the run went was committed half
    old, half new, and tile-verify passed it). A stat each, or a HEAD each on S3, as the
    plan took them. `began`: the identities the run began with, by path (the plan keeps
    only their digest), to name the files that changed."""
    if not plan.tile_files:   # a plan made without them has none to compare
        return
    now = file_identities(tile_paths(plan.tiles), plan.s3)
    if identities_digest(now) == plan.tile_files:
        return
    began = began or {}
    changed = [path for path, identity in now.items()
               if path in began and not same_identity(began[path], identity)]
    named = f" ({changed[0]}{f' and {len(changed) - 1} more' if len(changed) > 1 else ''})" \
        if changed else ""
    raise TileError(f"commit refused, nothing was published: {TILES_CHANGED}{named} (a size "
                    "or modification time, on S3 a size or ETag, "
                    "is not what the run began with), so its blocks may mix old and new "
                    "pixels; once the files are final, run the same command again: it "
                    "discards this run and computes every block from them")


def foreign_keys(listed: Iterable[str], objects: pa.Table, documents: set[str]) -> list[str]:
    """The keys of a container's listing that are neither objects of the ledger
    (`objects`) nor metadata `documents` the commit writes: files this job did not write."""
    ours = set(objects["key"].to_pylist()) | documents
    return sorted(key for key in listed if key not in ours)


def _crc(store: Store, key: str) -> int | None:
    try:
        return zlib.crc32(store.get(key))
    except KeyError:
        return None


def summary(changed: Iterable[Changed], total: int) -> str:
    """'N of M recorded objects …, e.g. …' for a message."""
    changed = list(changed)
    return (f"{len(changed)} of {total} recorded objects are missing from the output or "
            f"changed (e.g. {changed[0].describe()})")
