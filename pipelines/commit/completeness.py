"""Is a run complete? Checked from block counts and the ledger, never from key lists.

Every planned partition must have all its blocks recorded in the ledger, no block may lie
outside the plan, and the ledger must hold exactly as many objects as the plan's blocks
own (`TaskPlan.objects`, counted from grid ranges). Resume uses the same per-partition
counts to find what is left to run.
"""

from __future__ import annotations

import numpy as np

from pipelines.commit.ledger import Ranges, Recorded
from pipelines.errors import RunFailed
from pipelines.plan import ExportPlan, StageTasks


def recorded_per_partition(stage: StageTasks, blocks: np.ndarray | None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """For recorded `blocks` (m, 3) of one stage and timepoint: how many each partition of
    the run order holds, and each block's partition (its run position; -1 for a block
    outside every planned partition)."""
    blocks = np.zeros((0, 3), np.int64) if blocks is None else blocks
    linear = stage.partition_ids(blocks)
    by_id = np.argsort(stage.ids, kind="stable")
    sorted_ids = stage.ids[by_id]
    at = np.minimum(np.searchsorted(sorted_ids, linear), max(len(sorted_ids) - 1, 0))
    known = (sorted_ids[at] == linear) if len(sorted_ids) else np.zeros(len(linear), bool)
    position = np.where(known, by_id[at] if len(sorted_ids) else -1, -1)
    return np.bincount(position[known], minlength=len(stage)), position


def check_complete(plan: ExportPlan, recorded: Recorded) -> None:
    """RunFailed (one line) unless the ledger accounts for every planned block and object."""
    tasks = plan.task_plan
    missing = extra = 0
    for n, stage in enumerate(tasks.stages):
        for t in range(tasks.timepoints):
            blocks = recorded.blocks.get((n, t))
            counts, position = recorded_per_partition(stage, blocks)
            extra += int(np.count_nonzero(position < 0)) + int(np.maximum(counts - stage.counts, 0).sum())
            missing += int(np.maximum(stage.counts - counts, 0).sum())
    if missing or extra:
        raise RunFailed(f"the ledger does not match the plan: {missing} of {tasks.blocks} blocks "
                        f"missing, {extra} unexpected")
    objects = 0 if recorded.objects is None else len(recorded.objects)
    if objects != sum(tasks.objects):
        raise RunFailed(f"the ledger lists {objects} objects but the plan's blocks own "
                        f"{sum(tasks.objects)}")


def channel_ranges(plan: ExportPlan, recorded: Recorded) -> Ranges:
    """(min, max) of each channel's level-0 values, over all fused blocks."""
    if not recorded.ranges:
        return tuple((0, 0) for _ in range(plan.output.channels))
    # NaN: a channel without a finite value (all NaN or ±inf): no window to show
    return tuple((lo, hi) if lo == lo and hi == hi else (0, 0) for lo, hi in recorded.ranges)
