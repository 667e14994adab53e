"""Commit on the driver: check the receipts, then write metadata last.

Until `commit` runs, the output holds chunks but no metadata, so no reader can open a
dataset there. `commit` first checks that every planned task returned exactly one receipt
accounting for exactly the objects it owns, then writes every array's metadata (all
levels together), then the layout's group and viewer metadata, root last. The returned
`CommitSummary` is the record a ledger or success file builds on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import PurePosixPath

from pipelines import __version__
from pipelines.layouts import documents as metadata
from pipelines.errors import OutputError
from pipelines.formats import FORMATS, format_module
from pipelines.plan import BlockReceipt, ExportPlan, OutputSpec
from pipelines.storage import Store


@dataclass(frozen=True)
class CommitSummary:
    """What was committed: counts, bytes and value ranges, for reports and records."""

    uri: str
    format: str
    layout: str
    arrays: tuple[str, ...]             # array paths, level 0 of the first channel first
    shape: tuple[int, ...]              # level 0, x, y, z
    levels: int
    tasks: int
    objects_written: int
    objects_skipped: int
    bytes_written: int
    ranges: tuple[tuple[float, float], ...]  # per channel, level 0 (min, max)
    task_seconds: float
    extra_files: tuple[str, ...] = ()   # written beside the container (BigDataViewer XML)
    digest: str = ""                    # sha256 over every object's key and crc32

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(plan: ExportPlan) -> str:
    """A digest of everything that decides the output's bytes: a rerun with the same
    fingerprint writes the same objects, so it may continue over a failed run's leftovers."""
    essentials = (__version__, plan.output, plan.tiles, plan.stages, plan.blending,
                  plan.interpolation)
    return hashlib.sha256(repr(essentials).encode()).hexdigest()[:32]


def job_record_key(output: OutputSpec) -> str:
    """The job record lives beside the container, never inside the published dataset."""
    return f"{PurePosixPath(output.uri).name}.job.json"


def check_output(plan: ExportPlan, store: Store, beside: Store) -> ExportPlan:
    """Refuse an output that already holds a committed dataset (of this format or any
    other), or holds files that are not from this job. (Writability is checked before the
    lock is taken: `Store.check_writable`.)

    An unfinished run of the same job (same fingerprint) is continued: the plan comes back
    marked `rerun`. An unfinished run of this output with other settings is discarded."""
    spec = plan.output.array(0, 0, 0)
    committed = [key for key, _ in format_module(plan.output.format).array_documents(spec)]
    committed += [fmt.ROOT_KEY for fmt in FORMATS.values()] + [".zattrs"]
    for key in committed:
        if store.exists(key):
            raise OutputError(
                f"output.uri: {store.uri} already holds a committed dataset ({key}); "
                f"choose another output.uri, or pass --overwrite to replace it")
    leftover = next(iter(store.list()), None)
    if leftover is None:
        return plan
    record = read_json(beside, job_record_key(plan.output))
    if not record:
        raise OutputError(f"output.uri: {store.uri} is not empty: it holds files that are not "
                          f"from this job (e.g. {leftover}); remove them or choose another output.uri")
    if record.get("fingerprint") != fingerprint(plan):
        discard_unfinished(store)  # our own unfinished run with other settings: start over
        return plan
    return replace(plan, rerun=True)


def remove_dataset(plan: ExportPlan, store: Store, beside: Store) -> int:
    """--overwrite: delete everything in the output and its records beside it (job record,
    ledger), so the new run starts from an empty output. Returns the objects removed."""
    name = PurePosixPath(plan.output.uri).name
    removed = discard_unfinished(store)
    for key in [f"{name}.job.json", *beside.list(f"{name}.job/")]:
        beside.delete(key)
    return removed


def discard_unfinished(store: Store) -> int:
    """Delete what an unfinished run of this job with other settings left in the output
    (the job record proves they are ours); nothing of it may mix with the new data."""
    keys = list(store.list())
    for key in keys:
        store.delete(key)
    return len(keys)


def lock_key(output: OutputSpec) -> str:
    return f"{PurePosixPath(output.uri).name}.job.lock"


def take_lock(plan: ExportPlan, beside: Store) -> None:
    """Become the one writer of this output, or refuse with who holds it.

    The lock is created only if absent (O_EXCL on files, a conditional PUT on S3). A lock
    left by a driver that died on this machine is taken over, so a killed job can resume."""
    holder = {"job": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
              "since": time.time(), "fingerprint": fingerprint(plan)}
    key = lock_key(plan.output)
    for _ in range(2):
        if beside.put_if_absent(key, json.dumps(holder).encode()):
            return
        current = read_json(beside, key)
        if not lock_holder_dead(current):
            raise OutputError(
                f"output.uri: {plan.output.uri} is being written by another job (pid "
                f"{current.get('pid')} on {current.get('host')}); wait for it to finish, or if it "
                f"is dead, remove {beside.uri}/{key}")
        beside.delete(key)  # its driver died on this machine: take over
    raise OutputError(f"output.uri: could not take the lock {beside.uri}/{key}")


def release_lock(plan: ExportPlan, beside: Store) -> None:
    beside.delete(lock_key(plan.output))


def lock_holder_dead(holder: dict) -> bool:
    """Whether a lock's holder is a process of this machine that no longer runs."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def start_record(plan: ExportPlan, beside: Store) -> None:
    """Record the job beside the container before the first task writes anything."""
    record = {"job": uuid.uuid4().hex, "fingerprint": fingerprint(plan), "status": "running",
              "version": __version__, "started": time.time(), "uri": plan.output.uri,
              "format": plan.output.format,
              "arrays": {spec.path: asdict(spec) for spec in plan.output.arrays()}}
    beside.put(job_record_key(plan.output), json.dumps(record, indent=2).encode())


def record_failure(plan: ExportPlan, beside: Store, message: str, detail: str) -> str:
    """Mark the job record failed and keep the full trace beside the container; returns
    where the trace is, for the one-line message."""
    name = PurePosixPath(plan.output.uri).name
    beside.put(f"{name}.error.log", detail.encode())
    record = {**read_json(beside, job_record_key(plan.output)), "status": "failed",
              "failed": time.time(), "error": message}
    beside.put(job_record_key(plan.output), json.dumps(record, indent=2).encode())
    return f"{beside.uri}/{name}.error.log"


def read_json(store: Store, key: str) -> dict:
    """A small JSON record (job record, lock), or {} when it is missing or unreadable."""
    try:
        return json.loads(store.get(key))
    except (KeyError, ValueError):
        return {}


def commit(plan: ExportPlan, receipts: list[BlockReceipt], store: Store,
           beside: Store) -> CommitSummary:
    """Check that the receipts cover the plan exactly, then write metadata: arrays first,
    then groups, root last; then the files beside the container (BDV XML) and the job
    record, marked committed with the summary."""
    check_receipts(plan, receipts)
    ranges = channel_ranges(plan, receipts)
    documents = metadata.documents(plan, ranges)
    for key, document in documents.arrays + documents.groups:
        store.put(key, document)
    for key, document in documents.beside:
        beside.put(key, document)
    summary = summarize(plan, receipts, ranges, tuple(k for k, _ in documents.beside))
    record = {**read_json(beside, job_record_key(plan.output)), "fingerprint": fingerprint(plan),
              "status": "committed", "committed": time.time(), "summary": summary.to_dict()}
    beside.put(job_record_key(plan.output), json.dumps(record, indent=2).encode())
    return summary


def check_receipts(plan: ExportPlan, receipts: list[BlockReceipt]) -> None:
    """Every planned task has one receipt, and each receipt accounts for exactly its objects."""
    planned = {t.key: t for t in plan.tasks}
    got = [r.task for r in receipts]
    missing, extra = set(planned) - set(got), set(got) - set(planned)
    if missing or extra or len(got) != len(set(got)):
        raise RuntimeError(
            f"receipts do not match the plan: {len(missing)} tasks missing, "
            f"{len(extra)} unexpected, {len(got) - len(set(got))} duplicated; nothing committed")
    for r in receipts:
        reported = sorted([k for k, _, _ in r.written] + list(r.skipped))
        if reported != sorted(plan.expected_keys(planned[r.task])):
            raise RuntimeError(f"task {r.task}: receipt does not list exactly the objects the "
                               f"task owns; nothing committed")


def channel_ranges(plan: ExportPlan, receipts: list[BlockReceipt]) -> tuple[tuple[float, float], ...]:
    """(min, max) of each channel's level-0 values, over all fused blocks."""
    fused = [r for r in receipts if r.task[0] == 0]
    if not fused:
        return tuple((0, 0) for _ in range(plan.output.channels))
    return tuple((min(r.ranges[c][0] for r in fused), max(r.ranges[c][1] for r in fused))
                 for c in range(plan.output.channels))


def summarize(plan: ExportPlan, receipts: list[BlockReceipt], ranges, extra_files) -> CommitSummary:
    out = plan.output
    return CommitSummary(
        uri=out.uri, format=out.format, layout=out.layout,
        arrays=tuple(spec.path for spec in out.arrays()), shape=out.shapes[0], levels=out.levels,
        tasks=len(receipts),
        objects_written=sum(len(r.written) for r in receipts),
        objects_skipped=sum(len(r.skipped) for r in receipts),
        bytes_written=sum(r.nbytes for r in receipts),
        ranges=ranges, task_seconds=sum(r.seconds for r in receipts), extra_files=extra_files,
        digest=objects_digest(receipts),
    )


def objects_digest(receipts: list[BlockReceipt]) -> str:
    """One checksum for the whole dataset: sha256 over the sorted (key, crc32) of every
    written object, and the keys of the skipped ones."""
    lines = sorted([f"{k} {c:08x}" for r in receipts for k, _, c in r.written]
                   + [f"{k} -" for r in receipts for k in r.skipped])
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
