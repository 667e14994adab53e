"""The executor side: one partition of blocks in → objects written → ledger parts and a
summary out.

An executor task runs the blocks of one partition in Morton order. For each channel, a
stage-0 block fuses the tiles it touches into level 0; a later-stage block reads its
region of the level below from the store and downsamples it. Then the block is
downsampled further for the stage's other levels. Every level's region is split into the
objects (chunks or shards) the block owns; objects equal to the fill value are skipped,
the rest encoded and written with one atomic put each. Each block's `BlockReceipt` goes
into the ledger (`ledger.PartRecorder`); the driver gets a `PartitionSummary` of counts,
and no pixel data or key list leaves the executor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipelines.commit.ledger import PartitionSummary, PartRecorder
from pipelines.commit.records import lost_lock
from pipelines.errors import BlockFailed
from pipelines.execute import readback
from pipelines.execute.problems import cause_line
from pipelines.execute.tuning import keep_freed_memory
from pipelines.formats import format_module
from pipelines.formats.objects import encode_region
from pipelines.geometry import Box
from pipelines.illumination.correct import tile_reader
from pipelines.pixels import pyramid
from pipelines.pixels.fusion import fuse, fuse_pieces
from pipelines.pixels.mosaic import Mosaic
from pipelines.pixels.value_range import ValueRange
from pipelines.plan import BlockReceipt, BlockTask, ExportPlan, PartitionTask
from pipelines.storage import Store, beside_store, open_store
from pipelines.storage.checksum import crc32
from pipelines.tiles import set_tile_cache


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
        raise BlockFailed(f"{where}: {cause_line(e)}") from e


def _run(task: BlockTask, plan: ExportPlan, store: Store, attempt: int = 0) -> BlockReceipt:
    started = time.perf_counter()
    if plan.task_delay:   # test hook: lets a test stop the driver mid-run; only when set,
        time.sleep(plan.task_delay)   # as sleep(0) is a system call too (0.06 ms a block)
    out, first = plan.output, plan.stages[task.stage].first
    boxes = plan.level_boxes(task)   # once per block: tiny blocks feel every repeat
    writer = _Writer(plan, task, store, boxes, attempt)
    ranges = []
    for c in range(out.channels):
        # a block that computes no further level from its voxels may stay in its tiles
        data = _first_level(task, plan, store, c, boxes[first], pieces=len(boxes) == 1)
        seen = ValueRange()
        writer.write(c, first, data, seen)   # its range gathered while it is encoded
        ranges.append(seen.numbers())
        for level in list(boxes)[1:]:
            assert isinstance(data, np.ndarray)   # pieces only where no level follows
            data = pyramid.downsample(data, out.factors[level], out.downsample)
            writer.write(c, level, data)
    owned = plan.object_count(task, boxes)
    if len(writer.written) + len(writer.skipped) != owned:
        raise RuntimeError(f"wrote or skipped {len(writer.written) + len(writer.skipped)} "
                           f"objects but the block owns {owned}")
    return BlockReceipt(task.key, tuple(writer.written), tuple(writer.skipped), tuple(ranges),
                        time.perf_counter() - started, time.time())


def _first_level(task: BlockTask, plan: ExportPlan, store: Store, c: int, box: Box,
                 pieces: bool = False) -> np.ndarray | Mosaic:
    """The block's voxels at its stage's first level (`box`): fused from tiles, or
    downsampled from the level below as stored by the previous stage. With `pieces`, tiles
    that need no resampling may come as a `Mosaic` of their regions and blended zones
    (`fusion.fuse_pieces`)."""
    out, first = plan.output, plan.stages[task.stage].first
    if first == 0:
        fusing = fuse_pieces if pieces else fuse
        return fusing(box, plan.tiles_of(task, c), plan.offset, plan.blending, out.base.np_dtype,
                      read=tile_reader(plan.correction, c, plan.s3), interpolation=plan.interpolation)
    factor, below = out.factors[first], out.shapes[first - 1]
    source = Box(tuple(s * f for s, f in zip(box.start, factor)),
                 tuple(min(s * f, n) for s, f, n in zip(box.stop, factor, below)))
    data = readback.read_region(format_module(out.format), out.array(task.timepoint, c, first - 1),
                                store, source, out.lead_index(task.timepoint, c))
    return pyramid.downsample(data, factor, out.downsample)


class _Writer:
    """Encodes and puts the objects of one task, keeping the receipt's lists."""

    def __init__(self, plan: ExportPlan, task: BlockTask, store: Store, boxes: dict[int, Box],
                 attempt: int = 0):
        self.plan, self.task, self.store, self.boxes = plan, task, store, boxes
        self.fmt = format_module(plan.output.format)
        self.written: list[tuple[str, int, int]] = []
        self.skipped: list[str] = []
        hooked = task.stage == 0 and task.index in plan.fail_blocks and attempt == 0
        self.fail_after = plan.object_count(task, boxes) // 2 if hooked else None

    def write(self, c: int, level: int, data: np.ndarray | Mosaic, seen: ValueRange | None = None) -> None:
        """Encode and put the objects of `data` (channel `c`, `level`), showing `seen` its
        values if given."""
        out, t = self.plan.output, self.task.timepoint
        spec, box = out.array(t, c, level), self.boxes[level]
        for key, payload in encode_region(self.fmt, spec, data, box, out.lead_index(t, c), seen,
                                          checksum=True):
            if self.fail_after is not None and len(self.written) + len(self.skipped) >= self.fail_after:
                raise InjectedFailure("injected by debug.fail_blocks after writing half the objects")
            if payload is None:
                if self.plan.rerun:  # an earlier attempt may have stored data here
                    self.store.delete(key)
                self.skipped.append(key)
                continue
            self.store.put(key, payload)
            self.written.append((key, len(payload), crc32(payload)))


# how often a task looks whether its run still holds the output's lock (`run_partition`):
# what a taken-over run may still write is the blocks begun in this many seconds, and
# the one under way
OWNER_CHECK_SECONDS = 2.0


@dataclass(frozen=True)
class BlockJob:
    """What every task of a stage shares: the plan (without its task list: partitions
    travel one per executor task) and where blocks are recorded (None: nowhere)."""

    plan: ExportPlan
    ledger: str | None = None
    run: str = ""  # this run's id: executors' caches do not carry over between runs


def execute_partition(job: BlockJob, part: PartitionTask, attempt: int) -> PartitionSummary:
    """The function executors run for each task: compute and write its blocks in order,
    recording them in the ledger as they finish, so a driver or task that dies loses at
    most `plan.checkpoint_seconds` of finished work."""
    plan = job.plan
    try:
        keep_freed_memory()   # no page faults for each chunk's buffers (execute/tuning.py)
        set_tile_cache(plan.tile_cache, job.run)
        beside = beside_store(plan.output.uri, plan.s3) if job.ledger else None
        return run_partition(part, plan, _store(plan.output.uri, plan.s3), beside, job.ledger,
                             attempt)
    except BlockFailed:
        raise
    except Exception as e:   # outside any block, e.g. recording finished blocks in the
        # ledger: still one line with the cause, which the driver finds in Spark's trace
        where = f"the task from block {list(part.start)}" + (
            f" of stage {part.stage}" if part.stage else "")
        raise BlockFailed(f"{where}: {cause_line(e)}") from e


def run_partition(part: PartitionTask, plan: ExportPlan, store: Store, beside: Store | None,
                  ledger_base: str | None, attempt: int = 0) -> PartitionSummary:
    """Run a partition's blocks into `store`, recording them under `ledger_base` of
    `beside` (nowhere when None)."""
    recorder = PartRecorder(beside, ledger_base, part.key, plan.checkpoint_seconds)
    looked = -OWNER_CHECK_SECONDS
    for task in part.block_tasks():
        # trial AV: a run whose lock was removed while it went on wrote on into the
        # dataset of the run that took over, which committed them (a same-size chunk
        # passes its check); trial AX: a task under way did so for a minute. A block
        # starts only while the lock is this run's, looked at every OWNER_CHECK_SECONDS
        # of a task: one small read each (on S3 a GET of ~250 bytes)
        if beside is not None and time.monotonic() - looked >= OWNER_CHECK_SECONDS:
            lost = lost_lock(plan, beside)
            if lost:
                raise BlockFailed(lost)
            looked = time.monotonic()
        recorder.add(run_block(task, plan, store, attempt))
    return recorder.finish()


def stored_bytes(summary: PartitionSummary) -> int:
    """Compressed bytes a task stored, for the progress line."""
    return summary.nbytes


def blocks_run(summary: PartitionSummary) -> int:
    """Blocks a task ran, for the progress line."""
    return summary.blocks
