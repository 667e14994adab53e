"""Commit on the driver: check the receipts, then write metadata last.

Until `commit` runs, the output holds chunks but no metadata, so no reader can open a
dataset there. `commit` first checks that every planned task returned exactly one receipt
accounting for exactly the objects it owns, then writes every array's metadata (all
levels together), then the layout's group and viewer metadata, root last. The returned
`CommitSummary` is the record a ledger or success file builds on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.commit.receipts import Ranges, channel_ranges, check_receipts, receipts_digest
from pipelines.commit.records import fingerprint, update_record
from pipelines.layouts import documents as metadata
from pipelines.plan import BlockReceipt, ExportPlan
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
    tasks: int
    objects_written: int
    objects_skipped: int
    bytes_written: int
    ranges: Ranges  # per channel, level 0 (min, max)
    task_seconds: float
    extra_files: tuple[str, ...] = ()  # written beside the container (BigDataViewer XML)
    digest: str = ""  # sha256 over every object's key and crc32 (records.digest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def commit(plan: ExportPlan, receipts: list[BlockReceipt], store: Store,
           beside: Store) -> CommitSummary:
    """Check that the receipts cover the plan exactly, then write metadata: arrays first,
    then groups, root last; then the files beside the container (BDV XML) and the job
    record, marked committed with the summary."""
    check_receipts(plan, receipts)
    return publish(plan, receipts, store, beside)


def publish(plan: ExportPlan, receipts: list[BlockReceipt], store: Store,
            beside: Store) -> CommitSummary:
    """`commit` for receipts already checked (`check_receipts`)."""
    ranges = channel_ranges(plan, receipts)
    documents = metadata.documents(plan, ranges)
    for key, document in documents.arrays + documents.groups:
        store.put(key, document)
    for key, document in documents.beside:
        beside.put(key, document)
    summary = summarize(plan, receipts, ranges, tuple(k for k, _ in documents.beside))
    update_record(plan, beside, fingerprint=fingerprint(plan), status="committed",
                  committed=time.time(), summary=summary.to_dict())
    return summary


def summarize(plan: ExportPlan, receipts: list[BlockReceipt], ranges: Ranges,
              extra_files: tuple[str, ...]) -> CommitSummary:
    out = plan.output
    return CommitSummary(
        uri=out.uri, format=out.format, layout=out.layout,
        arrays=tuple(spec.path for spec in out.arrays()), shape=out.shapes[0], levels=out.levels,
        tasks=len(receipts),
        objects_written=sum(len(r.written) for r in receipts),
        objects_skipped=sum(len(r.skipped) for r in receipts),
        bytes_written=sum(r.nbytes for r in receipts),
        ranges=ranges, task_seconds=sum(r.seconds for r in receipts), extra_files=extra_files,
        digest=receipts_digest(receipts),
    )
