"""The executor side: one block task, descriptor in → objects written → receipt out.

For each channel, a stage-0 task fuses the tiles of its block into level 0; a later-stage
task reads its block's region of the level below from the store and downsamples it.
Then the task downsamples further inside the block for the stage's other levels. Every
level's region is split into the objects (chunks or shards) the block owns; objects equal
to the fill value are skipped, the rest encoded and written with one atomic put each.
The task returns a `BlockReceipt`; no pixel data leaves the executor.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from pipelines import pyramid
from pipelines.commit import ledger
from pipelines.errors import BlockFailed
from pipelines.execute import readback
from pipelines.formats import format_module
from pipelines.formats.objects import encode_region
from pipelines.fusion import fuse
from pipelines.geometry import Box
from pipelines.plan import BlockReceipt, BlockTask, ExportPlan
from pipelines.storage import Store, beside_store, open_store
from pipelines.tiles import read_region


class InjectedFailure(RuntimeError):
    """Raised by the `debug.fail_blocks` test hook; never raised in a normal run."""


@lru_cache(maxsize=8)
def _store(uri: str, s3) -> Store:
    """One store object per output per executor process, opened on first use."""
    return open_store(uri, s3)


def run_block(task: BlockTask, plan: ExportPlan, store: Store | None = None,
              attempt: int = 0) -> BlockReceipt:
    """Compute and write one task; raise BlockFailed naming the block if anything goes wrong.
    `attempt` counts Spark's attempts of this task (the failure test hook uses it)."""
    try:
        return _run(task, plan, store or _store(plan.output.uri, plan.s3), attempt)
    except Exception as e:
        where = f"block {list(task.index)}" + (f" of stage {task.stage}" if task.stage else "")
        raise BlockFailed(f"{where}: {type(e).__name__}: {e}") from e


def _run(task: BlockTask, plan: ExportPlan, store: Store, attempt: int = 0) -> BlockReceipt:
    started = time.perf_counter()
    time.sleep(plan.task_delay)  # test hook: lets a test stop the driver mid-run
    out, stage = plan.output, plan.stages[task.stage]
    writer = _Writer(plan, task, store, attempt)
    ranges = []
    for c in range(out.channels):
        data = _first_level(task, plan, store, c)
        ranges.append((_number(data.min()), _number(data.max())))
        for level in range(stage.first, stage.first + stage.count):
            if level > stage.first:
                data = pyramid.downsample(data, out.factors[level], out.downsample)
            writer.write(c, level, data)
    return BlockReceipt(task.key, tuple(writer.written), tuple(writer.skipped), tuple(ranges),
                        time.perf_counter() - started, time.time())


def _first_level(task: BlockTask, plan: ExportPlan, store: Store, c: int) -> np.ndarray:
    """The block's voxels at its stage's first level: fused from tiles, or downsampled
    from the level below as stored by the previous stage."""
    out, first = plan.output, plan.stages[task.stage].first
    box = plan.level_box(task, first)
    if first == 0:
        return fuse(box, plan.tiles_of(task, c), plan.offset, plan.blending, out.base.np_dtype,
                    read=partial(read_region, s3=plan.s3), interpolation=plan.interpolation)
    factor, below = out.factors[first], out.shapes[first - 1]
    source = Box(tuple(s * f for s, f in zip(box.start, factor)),
                 tuple(min(s * f, n) for s, f, n in zip(box.stop, factor, below)))
    data = readback.read_region(format_module(out.format), out.array(task.timepoint, c, first - 1),
                                store, source, out.lead_index(task.timepoint, c))
    return pyramid.downsample(data, factor, out.downsample)


class _Writer:
    """Encodes and puts the objects of one task, keeping the receipt's lists."""

    def __init__(self, plan: ExportPlan, task: BlockTask, store: Store, attempt: int = 0):
        self.plan, self.task, self.store = plan, task, store
        self.fmt = format_module(plan.output.format)
        self.written: list[tuple[str, int, int]] = []
        self.skipped: list[str] = []
        hooked = task.stage == 0 and task.index in plan.fail_blocks and attempt == 0
        self.fail_after = len(plan.expected_keys(task)) // 2 if hooked else None

    def write(self, c: int, level: int, data: np.ndarray) -> None:
        out, t = self.plan.output, self.task.timepoint
        spec, box = out.array(t, c, level), self.plan.level_box(self.task, level)
        for key, payload in encode_region(self.fmt, spec, data, box, out.lead_index(t, c)):
            if self.fail_after is not None and len(self.written) + len(self.skipped) >= self.fail_after:
                raise InjectedFailure("injected by debug.fail_blocks after writing half the objects")
            if payload is None:
                if self.plan.rerun:  # an earlier attempt may have stored data here
                    self.store.delete(key)
                self.skipped.append(key)
                continue
            self.store.put(key, payload)
            self.written.append((key, len(payload), zlib.crc32(payload)))


def _number(value) -> float | int:
    return value.item()


@dataclass(frozen=True)
class BlockJob:
    """What every block task of a stage shares: the plan (without its task list: tasks
    travel one per executor task) and where receipts are recorded (None: nowhere)."""

    plan: ExportPlan
    ledger: str | None = None


def execute_task(job: BlockJob, task: BlockTask, attempt: int) -> BlockReceipt:
    """The function executors run for each block: compute and write it, then record its
    receipt in the ledger, so a driver that dies loses nothing finished."""
    receipt = run_block(task, job.plan, attempt=attempt)
    if job.ledger:
        ledger.record(beside_store(job.plan.output.uri, job.plan.s3), job.ledger, receipt)
    return receipt


def stored_bytes(receipt: BlockReceipt) -> int:
    """Compressed bytes a block stored, for the progress line."""
    return receipt.nbytes
