"""Commit on the driver: check the ledger, then write metadata last.

Until `commit` runs, the output holds chunks but no metadata, so no reader can open a
dataset there. `commit` first checks that the ledger records every planned block and
exactly the objects they own (`completeness`), then writes every array's metadata (all
levels together), then the layout's group and viewer metadata, root last. The returned
`CommitSummary` is the record a ledger or success file builds on.

Before the first document, the job record is marked `committing` with every document's
digest (`records.begin_commit`): a driver killed between two metadata writes leaves a
dataset a rerun of the same job recognises as its own and finishes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.compute as pc

from pipelines.commit import documents as metadata
from pipelines.commit import ledger
from pipelines.commit.completeness import channel_ranges, check_complete
from pipelines.commit.ledger import Ranges, Recorded
from pipelines.commit.records import (
    Sidecars,
    begin_commit,
    document_digests,
    fingerprint,
    update_record,
)
from pipelines.plan import ExportPlan
from pipelines.storage import Store


@dataclass(frozen=True)
class CommitSummary:
    """What was committed: counts, bytes and value ranges, for reports and records."""

    uri: str
    format: str
    layout: str
    arrays: tuple[str, ...]  # array paths, level 0 of the first channel first
    shape: tuple[int, ...]  # level 0, x, y, z
    levels: int
    tasks: int  # executor tasks (partitions of blocks) of the plan
    objects_written: int
    objects_skipped: int
    bytes_written: int
    ranges: Ranges  # per channel, level 0 (min, max)
    task_seconds: float
    extra_files: tuple[str, ...] = ()  # written beside the container (BigDataViewer XML)
    digest: str = ""  # sha256 over every object's key and crc32 (records.digest)
    blocks: int = 0  # blocks of every stage and timepoint

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def commit(plan: ExportPlan, store: Store, beside: Store) -> CommitSummary:
    """Check that the ledger covers the plan exactly, then write metadata: arrays first,
    then groups, root last; then the files beside the container (BDV XML) and the job
    record, marked committed with the summary."""
    recorded = ledger.read_parts(beside, ledger.folder(plan))
    check_complete(plan, recorded)
    return publish(plan, recorded, store, beside)


def publish(plan: ExportPlan, recorded: Recorded, store: Store, beside: Store) -> CommitSummary:
    """`commit` for a ledger already checked (`check_complete`)."""
    ranges = channel_ranges(plan, recorded)
    documents = metadata.documents(plan, ranges)
    # recorded before the first document is written: a rerun can then finish a commit a
    # kill cut short, and verify checks every document against its digest
    begin_commit(plan, beside, document_digests(documents.arrays + documents.groups),
                 document_digests(documents.beside))
    for key, document in documents.arrays + documents.groups:
        store.put(key, document)
    for key, document in documents.beside:
        beside.put(key, document)
    summary = summarize(plan, recorded, ranges, tuple(k for k, _ in documents.beside))
    update_record(plan, beside, fingerprint=fingerprint(plan), status="committed",
                  committed=time.time(), summary=summary.to_dict())
    # an earlier failed run's trace, ours (the job record says so): stale once committed
    # (trial J); best effort, as the dataset is committed whatever happens to it (review G)
    error_log = Sidecars.of(plan.output.uri).error_log
    with contextlib.suppress(Exception):
        if beside.exists(error_log):
            beside.delete(error_log)
    return summary


def summarize(plan: ExportPlan, recorded: Recorded, ranges: Ranges,
              extra_files: tuple[str, ...]) -> CommitSummary:
    out, objects = plan.output, recorded.objects
    assert objects is not None
    written = objects["written"].to_pylist()
    return CommitSummary(
        uri=out.uri, format=out.format, layout=out.layout,
        arrays=tuple(spec.path for spec in out.arrays()), shape=out.shapes[0], levels=out.levels,
        tasks=plan.task_plan.partitions,
        objects_written=sum(written), objects_skipped=len(written) - sum(written),
        bytes_written=int(pc.sum(objects["nbytes"]).as_py() or 0),
        ranges=ranges, task_seconds=recorded.seconds, extra_files=extra_files,
        digest=ledger.objects_digest(objects),
        blocks=recorded.block_count,
    )
