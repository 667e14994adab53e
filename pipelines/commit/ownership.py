"""What in and beside the output is ours: nothing a user owns is written over or deleted.

Checked before anything is written (the lock included):
- the names a job keeps beside its container (`Sidecars`: the job record, the ledger
  folder, the report folder, the error log, the BigDataViewer XML) must be free, or be
  ours: the ledger folder holds only `<fingerprint>/…` keys, and the others exist only
  where our job record does;
- the output must not hold, or lie inside, any of the job's inputs (tile JSONs, the
  project XML, tile files and view containers);
- the output must not be another dataset's report or ledger folder, nor lie inside
  another dataset's container (`check_not_anothers`).
`--overwrite` and the discarding of an unfinished run with other settings delete only
what is ours: where our job record proves the container holds a run of this pipeline,
the files named as our chunks, shards and metadata documents are (`is_ours_by_name`),
and our temporary files; anything else in the container stops the job instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pipelines.commit import ledger
from pipelines.commit.records import Sidecars, read_json
from pipelines.errors import OutputError
from pipelines.plan import ExportPlan
from pipelines.storage import S3Options, Store, open_store
from pipelines.storage import uri as uris
from pipelines.storage.s3 import is_denied

# metadata documents any of our formats writes, at any depth of the container
METADATA_NAMES = ("attributes.json", "zarr.json", ".zarray", ".zattrs", ".zgroup")
_FOLDER = re.compile(r"\d+|c\d*|s\d+|setup\d+|timepoint\d+")   # array path components, Zarr v3's c/
_CHUNK = re.compile(r"\d+(\.\d+)*")   # a chunk index: N5 / Zarr "/" keys, Zarr v2 "." keys


def check_sidecars(uri: str, layout: str, store: Store, beside: Store) -> None:
    """OutputError unless every name we keep beside the container (`store`) of an output
    at `uri` written in `layout` is free or ours (the run asks, and the dry run's look at
    the output, which refuses as the run does)."""
    names = Sidecars.of(uri)
    where = uris.parent(uri) if uris.is_remote(uri) else str(Path(uri).resolve().parent)
    foreign = [k for k in beside.list(names.ledger_root)
               if not ledger.is_ledger_key(k[len(names.ledger_root):])]
    ours = bool(read_json(beside, names.job_record))
    # trial W: "another dataset" where our record proves it is ours; trial AQ: the line
    # read as if --overwrite had been given
    if foreign and ours:
        raise OutputError(f"output.uri: {names.ledger_root} beside the output (in {where}) holds "
                          f"files that are not a ledger of this tool (e.g. {foreign[0]}): the "
                          f"folder is kept for its ledgers, which --overwrite and tile-clean "
                          f"--remove delete: move them out of {names.ledger_root.rstrip('/')}")
    if foreign:
        raise OutputError(f"output.uri: {names.ledger_root} beside the output (in {where}) holds "
                          f"files that are not this job's ledger (e.g. {foreign[0]}): another "
                          f"dataset has the name this job keeps its records under; choose "
                          f"another output.uri or move {names.ledger_root.rstrip('/')}")
    if ours:
        return   # our record: the names beside it are ours
    taken = [n for n in (f"{names.report}/", names.error_log) if next(iter(beside.list(n)), None)]
    if layout == "bdv" and beside.exists(names.bdv_xml):
        taken.append(names.bdv_xml)
    held = next(iter(store.list()), None) if taken else None
    if held is not None:   # a dataset with its report, its job record lost (trial M)
        raise OutputError(f"output.uri: {uri} holds files (e.g. {held}) and "
                          f"{taken[0].rstrip('/')} is beside it, but there is no job record "
                          f"({names.job_record}) to say this pipeline wrote them; the job "
                          f"would write over them: move them away or choose another "
                          f"output.uri")
    if taken:
        raise OutputError(f"output.uri: {taken[0].rstrip('/')} already exists beside the output "
                          f"(in {where}) and is not from this pipeline (there is no "
                          f"{names.job_record}); the job would write over it: move it or "
                          f"choose another output.uri")


def check_not_anothers(uri: str, beside: Store, s3: S3Options | None) -> None:
    """OutputError when the output at `uri` is, or lies inside, a folder another dataset
    of this tool keeps beside itself (its report or ledger folder), or lies inside one of
    its containers, committed or being written (trial AV: a job writing `vol.report`
    had the report of `vol`'s running job written into its dataset; one writing inside
    `vol.n5` made that run fail at its commit). Known by the other's job record or lock
    (up to two stats, on S3 HEADs, per folder above the output, two more where its name
    ends like one we keep; a folder these credentials may not read ends the climb: review
    RV11, S3 keys scoped to a prefix). Asked by the run and the dry run's look."""
    output = uri.rstrip("/")
    for folder in [output, *_folders_above(output)]:
        try:
            said = _kept_by_another(folder, beside if folder == output else
                                    open_store(uris.parent(folder), s3), folder == output)
        except PermissionError:
            return   # a folder this user may not look into: nothing above it is looked at
        except Exception as e:
            if is_denied(e):
                return
            raise
        if said:
            raise OutputError(f"output.uri: {uri} {said}: choose an output.uri outside it")


def _kept_by_another(folder: str, holding: Store, is_output: bool) -> str:
    """How `folder` (the output, or a folder above it) belongs to another dataset, '' when
    it does not; `holding`: the store of the folder holding it."""
    name = uris.name(folder)
    where = "is" if is_output else f"lies inside {folder},"
    # trial AX: a folder `vol.job.json` made while vol's run held only its lock, which
    # then failed to write its record
    for suffix, kept in _KEPT_BESIDE:
        other = Sidecars(name.removesuffix(suffix))
        found = _ours_beside(holding, other) if name.endswith(suffix) and other.name else ""
        if found:
            return f"{where} the {kept} of the dataset {other.name} beside it ({found} is there)"
    found = "" if is_output else _ours_beside(holding, Sidecars.of(folder))
    if found:
        return (f"lies inside {folder}, a dataset this tool writes or wrote ({found} is "
                f"beside it): another dataset in it would fail its commit or tile-verify")
    return ""


# what a dataset keeps beside itself under its name plus a suffix (`Sidecars`), by what
# the refusals call it
_KEPT_BESIDE = ((".report", "report folder"), (".job", "ledger folder"),
                (".job.json", "job record's name"), (".job.lock", "lock's name"),
                (".error.log", "error log's name"))


def _folders_above(uri: str) -> list[str]:
    """The folders holding `uri`, nearest first, without the file system's root or the
    S3 bucket (which have no name to keep anything beside)."""
    if not uris.is_remote(uri):
        path = uris.local_path(uri) if uri.startswith("file:") else uri   # review RV12
        return [str(p) for p in Path(path).resolve().parents if p.name]
    found, folder = [], uris.parent(uri.rstrip("/"))
    while uris.parse(folder).path.strip("/"):
        found.append(folder)
        folder = uris.parent(folder)
    return found


def _ours_beside(beside: Store, names: Sidecars) -> str:
    """The job record or the lock `beside` keeps for a dataset named `names.name` (the
    lock alone in a run's first seconds), '' when neither is there."""
    return next((key for key in (names.job_record, names.lock) if beside.exists(key)), "")


def check_inputs_apart(plan: ExportPlan, inputs: list[str]) -> None:
    """OutputError if the output is, holds or lies inside one of `inputs` (files or
    containers the job reads)."""
    out = _location(plan.output.uri)
    for path in inputs:
        source = _location(path)
        if source == out or _inside(source, out) or _inside(out, source):
            raise OutputError(f"output.uri: {plan.output.uri} overlaps an input of this job "
                              f"({path}); writing there could destroy it: choose an output "
                              f"outside the acquisition's files")


def _location(path: str) -> str:
    if uris.is_remote(path):
        return path.rstrip("/")
    return str(Path(path).resolve())


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def is_ours_by_name(key: str) -> bool:
    """Whether `key` has the shape of a chunk, shard or metadata document of one of our
    layouts: every folder an array path component (`c0`, `s1`, `setup2`, `timepoint0`,
    `0`, the Zarr v3 `c`) and the name a chunk index or a metadata document."""
    *folders, name = key.split("/")
    return all(_FOLDER.fullmatch(f) for f in folders) and (
        name in METADATA_NAMES or _CHUNK.fullmatch(name) is not None)


def owned_keys(store: Store) -> tuple[list[str], list[str]]:
    """(ours, foreign): the container's keys split by `is_ours_by_name`. Called only where
    our job record proves the container holds a run of this pipeline."""
    ours: list[str] = []
    foreign: list[str] = []
    for key in store.list():
        (ours if is_ours_by_name(key) else foreign).append(key)
    return ours, foreign


def foreign_files(store: Store, count: int, first: str, why: str) -> OutputError:
    """The refusal to delete a container of ours that holds `count` files we did not write."""
    return OutputError(f"{why}: {store.uri} holds {count} file(s) this pipeline did not "
                       f"write (e.g. {first}); nothing was deleted: move them out first")


def foreign_count(store: Store) -> tuple[int, str | None]:
    """How many of the container's keys are not ours by name, and the first, from one
    listing held in no list (a dry run's look at a dataset of millions of objects)."""
    count, first = 0, None
    for key in store.list():
        if not is_ours_by_name(key):
            count, first = count + 1, first or key
    return count, first


def remove_owned(store: Store, why: str, announce: Callable[[], object] = lambda: None) -> int:
    """Delete the container's objects that are ours (`owned_keys`) and our temporary
    files, then the folders that leaves empty (trial AB: an N5 level folder left empty
    is a group to z5py, and zarr-python warns of a Zarr array's); OutputError, deleting
    nothing, when anything else is there. `announce` is called once the deletion is
    certain (trial AM: "discarding …" was printed, then the deletion refused)."""
    ours, foreign = owned_keys(store)
    if foreign:
        raise foreign_files(store, len(foreign), foreign[0], why)
    announce()
    for key in ours:
        store.delete(key)
    for partial in store.partial_writes():
        store.remove_partial(partial)
    # one walk up from each folder that held a deleted key: the last walk through a
    # folder finds it empty, whatever the order
    for key in {key.rpartition("/")[0]: key for key in ours if "/" in key}.values():
        store.remove_empty_folders(key, "")
    return len(ours)
