"""The receipts executors send back: checked against the plan, then summed up.

A `BlockReceipt` lists every object its task wrote (key, bytes, crc32) or skipped as
empty; the commit proceeds only if the receipts account for exactly the planned objects.
"""

from __future__ import annotations

from pipelines.commit.records import digest
from pipelines.errors import RunFailed
from pipelines.plan import BlockReceipt, ExportPlan

Ranges = tuple[tuple[float, float], ...]


def check_receipts(plan: ExportPlan, receipts: list[BlockReceipt]) -> None:
    """Every planned task has one receipt, and each receipt accounts for exactly its objects;
    RunFailed (one line) otherwise."""
    planned = {t.key: t for t in plan.tasks}
    got = [r.task for r in receipts]
    missing, extra = set(planned) - set(got), set(got) - set(planned)
    if missing or extra or len(got) != len(set(got)):
        raise RunFailed(
            f"receipts do not match the plan: {len(missing)} tasks missing, "
            f"{len(extra)} unexpected, {len(got) - len(set(got))} duplicated")
    for r in receipts:
        reported = sorted([k for k, _, _ in r.written] + list(r.skipped))
        if reported != sorted(plan.expected_keys(planned[r.task])):
            raise RunFailed(f"task {r.task}: its receipt does not list exactly the objects "
                            f"the task owns")


def channel_ranges(plan: ExportPlan, receipts: list[BlockReceipt]) -> Ranges:
    """(min, max) of each channel's level-0 values, over all fused blocks."""
    fused = [r for r in receipts if r.task[0] == 0]
    if not fused:
        return tuple((0, 0) for _ in range(plan.output.channels))
    return tuple((min(r.ranges[c][0] for r in fused), max(r.ranges[c][1] for r in fused))
                 for c in range(plan.output.channels))


def receipts_digest(receipts: list[BlockReceipt]) -> str:
    """The dataset's digest (`records.digest`) over every object the receipts list."""
    return digest([(k, c) for r in receipts for k, _, c in r.written]
                  + [(k, None) for r in receipts for k in r.skipped])
