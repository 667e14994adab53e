"""The tasks of an export, described by grid ranges and enumerated lazily.

A stage's blocks are the union of boxes of its first level's block grid: at stage 0 the
blocks each tile touches (one box per tile), at later stages the blocks under those. The
block grid is cut into partitions of at most `blocks_per_task` cells (boxes with sides
powers of two, `ranges.partition_shape`); a partition that holds at least one block is
one executor task (`PartitionTask`), which runs its blocks in
Morton order so that neighbours, which read the same tiles, run one after another. Only
box corners and per-partition counts are kept on the driver: a plan of millions of blocks
is a few arrays, and a partition's blocks are listed by the executor that runs it.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from pipelines.errors import PlanError
from pipelines.formats.objects import object_grid
from pipelines.geometry import Vec, ceil_div
from pipelines.plan.output import OutputSpec, Stage
from pipelines.plan.ranges import (
    expand_boxes,
    linear_cells,
    morton_order,
    partition_shape,
    ranks_within,
    union_size,
)
from pipelines.tiles import TileSet

# Automatic partition size: about this many uncompressed output bytes per task (seconds
# of work), at most MAX_BLOCKS_PER_TASK blocks, and at least TASKS_PER_SLOT tasks per
# task slot in each stage where there are blocks enough (MIN_TASKS when the job cannot
# know its slots: enough for a cluster of ~64 cores), so every core has work to the end.
TASK_BYTES = 256 * 2**20
MAX_BLOCKS_PER_TASK = 4096
TASKS_PER_SLOT = 4
MIN_TASKS = 256


@dataclass(frozen=True)
class BlockTask:
    """One block of a partition: stage, timepoint, grid index at the stage's first level,
    and (stage 0 only) the indices of the tiles it reads."""

    stage: int
    timepoint: int
    index: Vec
    tiles: tuple[int, ...] = ()

    @property
    def key(self) -> tuple:
        return (self.stage, self.timepoint, self.index)


@dataclass(frozen=True)
class BlockReceipt:
    """What one block wrote, kept on the executor until its partition records it.

    `written` holds (key, stored bytes, crc32 of the stored bytes) per object; `skipped`
    the keys of objects that held only the fill value and so were not written; `ranges`
    the (min, max) of each channel's values at the stage's first level.
    """

    task: tuple
    written: tuple[tuple[str, int, int], ...]
    skipped: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    seconds: float = field(default=0.0, compare=False)
    finished: float = field(default=0.0, compare=False)   # time.time() when it ended

    @property
    def nbytes(self) -> int:
        return sum(n for _, n, _ in self.written)


@dataclass(frozen=True)
class PartitionTask:
    """What an executor is sent for one task: a partition of one stage's block grid at one
    timepoint, with the stage's boxes that meet it (clipped to it)."""

    stage: int
    timepoint: int
    index: Vec                     # the partition's index in the partition grid
    start: Vec                     # its first block
    lo: tuple[Vec, ...]            # boxes [lo, hi) of blocks, clipped to the partition
    hi: tuple[Vec, ...]
    owners: tuple[int, ...]        # stage 0: the tile of each box; later stages: none
    blocks: int                    # blocks it holds, `done` included
    done: frozenset = frozenset()  # blocks an earlier run recorded: not run again

    @property
    def key(self) -> tuple:
        return (self.stage, self.timepoint, self.index)

    def block_tasks(self) -> list[BlockTask]:
        """Its blocks not in `done`, in Morton order, each with the tiles it reads."""
        cells, box = expand_boxes(np.array(self.lo, dtype=np.int64), np.array(self.hi, dtype=np.int64))
        order = morton_order(cells - np.array(self.start))
        tiles: dict[Vec, list[int]] = {}
        for cell, n in zip(cells[order].tolist(), box[order].tolist()):
            readers = tiles.setdefault(tuple(cell), [])
            if self.owners:
                readers.append(self.owners[n])
        return [BlockTask(self.stage, self.timepoint, index, tuple(sorted(readers)))
                for index, readers in tiles.items() if index not in self.done]


@dataclass(frozen=True, eq=False)
class StageTasks:
    """One stage's partitions, in run order (Morton order of the partition grid).

    Arrays, not objects: `lo`/`hi` (n, 3) are the stage's boxes of blocks, `owners` (n,)
    their tiles at stage 0; partition `k` of the run order has linear id `ids[k]`, holds
    `counts[k]` blocks and meets the boxes `boxes[starts[k]:starts[k + 1]]`."""

    stage: int
    grid: Vec       # blocks per axis at the stage's first level
    shape: Vec      # blocks per partition along x, y, z
    lo: np.ndarray
    hi: np.ndarray
    owners: np.ndarray
    ids: np.ndarray
    counts: np.ndarray
    starts: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def blocks(self) -> int:
        """Blocks of the stage at one timepoint."""
        return int(self.counts.sum())

    @property
    def partitions_per_axis(self) -> Vec:
        return tuple(int(v) for v in ceil_div(np.array(self.grid), np.array(self.shape)))

    def partition_of(self, block: Vec) -> Vec:
        """The partition that holds `block`."""
        return tuple(b // s for b, s in zip(block, self.shape))

    def partition_ids(self, blocks: np.ndarray) -> np.ndarray:
        """The linear id (as in `ids`) of the partition of each block of `blocks` (m, 3)."""
        nx, ny, _ = self.partitions_per_axis
        index = blocks // np.array(self.shape, dtype=np.int64)
        return index[:, 0] + nx * (index[:, 1] + ny * index[:, 2])

    def partition(self, k: int, timepoint: int, done: frozenset = frozenset()) -> PartitionTask:
        """The `k`-th partition of the run order, at `timepoint`."""
        return next(self.partitions(timepoint, np.array([k]), {k: done} if done else None))

    def partitions(self, timepoint: int, positions: np.ndarray | None = None,
                   done: dict[int, frozenset] | None = None) -> Iterator[PartitionTask]:
        """The partitions at `positions` of the run order (all when None), in that order,
        built a batch at a time with array operations (the driver may list millions);
        `done` maps positions to blocks an earlier run recorded."""
        positions = np.arange(len(self)) if positions is None else np.asarray(positions, np.int64)
        for first in range(0, len(positions), _BATCH):
            yield from self._batch(timepoint, positions[first:first + _BATCH], done or {})

    def _batch(self, timepoint: int, positions: np.ndarray, done: dict[int, frozenset]
               ) -> Iterator[PartitionTask]:
        ids = self.ids[positions]
        start = _unravel(ids, np.array(self.partitions_per_axis)) * np.array(self.shape)
        stop = np.minimum(start + np.array(self.shape), np.array(self.grid))
        sizes = self.starts[positions + 1] - self.starts[positions]
        pairs = np.repeat(self.starts[positions], sizes) + ranks_within(sizes)
        members, owner = self.boxes[pairs], np.repeat(np.arange(len(positions)), sizes)
        lo = list(map(tuple, np.maximum(self.lo[members], start[owner]).tolist()))
        hi = list(map(tuple, np.minimum(self.hi[members], stop[owner]).tolist()))
        owners = self.owners[members].tolist() if len(self.owners) else []
        edges = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        starts = list(map(tuple, start.tolist()))
        counts = self.counts[positions].tolist()
        for n, k in enumerate(positions.tolist()):
            a, b = edges[n], edges[n + 1]
            index = tuple(s // p for s, p in zip(starts[n], self.shape))
            yield PartitionTask(self.stage, timepoint, index, starts[n], tuple(lo[a:b]),
                                tuple(hi[a:b]), tuple(owners[a:b]), counts[n],
                                done.get(k, frozenset()))


_BATCH = 4096  # partitions built at once by StageTasks.partitions (few live objects at once)


@contextmanager
def quiet_collector() -> Iterator[None]:
    """While the driver lists millions of partitions: keep what exists now (the plan, the
    tiles) out of the garbage collector's passes, which otherwise cost more than building
    the partitions (benchmarks/plan_scale.py); everything is handed back afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True, eq=False)
class TaskPlan:
    """Every stage's tasks (the same at every timepoint), and what they own."""

    stages: tuple[StageTasks, ...]
    timepoints: int
    objects: tuple[int, ...]   # per level: objects the blocks own, all channels and timepoints

    @property
    def blocks(self) -> int:
        """Blocks of every stage and timepoint."""
        return self.timepoints * sum(s.blocks for s in self.stages)

    @property
    def partitions(self) -> int:
        return self.timepoints * sum(len(s) for s in self.stages)

    def block_tasks(self, stage: int | None = None) -> Iterator[BlockTask]:
        """Every block task (of one stage, or of all), partition by partition."""
        for s in self.stages if stage is None else (self.stages[stage],):
            for t in range(self.timepoints):
                for part in s.partitions(t):
                    yield from part.block_tasks()


def plan_tasks(output: OutputSpec, stages: tuple[Stage, ...], tiles: TileSet,
               blocks_per_task: int = 0, slots: int | None = None) -> TaskPlan:
    """Stage 0: the blocks some tile touches. Later stages: the blocks of their first level
    that lie under a stage-0 block (elsewhere everything is fill). `blocks_per_task` 0
    sizes partitions automatically for `slots` tasks at once (see TASK_BYTES)."""
    lo0, hi0, owners = tile_boxes(output, tiles)
    described = []
    for n, stage in enumerate(stages):
        lo, hi = (lo0, hi0) if n == 0 else boxes_under(output, stage.first, lo0, hi0)
        grid = output.block_grid(stage.first).counts
        per_task = blocks_per_task or auto_blocks_per_task(output, union_size(lo, hi), slots)
        shape = partition_shape(grid, per_task)
        check_plan_holds(output, stage, grid, lo, hi, shape)
        described.append(_stage_tasks(n, grid, lo, hi, owners if n == 0 else np.zeros(0, np.int64),
                                      shape))
    copies = output.timepoints * output.channels
    objects = tuple(copies * n for stage, s in zip(stages, described)
                    for n in _stage_objects(output, stage, s.lo, s.hi))
    return TaskPlan(tuple(described), output.timepoints, objects)


# What a plan can hold: partitions are numbered by int64 linear indices on their grid, and
# the driver indexes every (partition, tile box) pair at once (12.5 million took 0.87 GiB
# for a petabyte, BENCHMARKS.md).
MAX_PARTITION_GRID = 2**62
MAX_PAIRS = 100_000_000


def check_plan_holds(output: OutputSpec, stage: Stage, grid: Vec, lo: np.ndarray,
                     hi: np.ndarray, shape: Vec) -> None:
    """Raise PlanError, before any array is built, if a stage's partitions cannot be
    numbered in int64 or its (partition, box) pairs would not fit on the driver: e.g. tiles
    far apart, or a tiny fusion.voxel_size. Products are taken in Python ints and float64,
    which do not overflow where int64 would."""
    per_axis = [-(-int(g) // int(s)) for g, s in zip(grid, shape)]
    size = np.array(shape, dtype=np.int64)
    spans = np.maximum(ceil_div(hi, size) - lo // size, 0).astype(np.float64)
    pairs = float(np.prod(spans, axis=1).sum())
    positions = per_axis[0] * per_axis[1] * per_axis[2]
    if positions <= MAX_PARTITION_GRID and pairs <= MAX_PAIRS:
        return
    raise PlanError(f"the output is too large to plan: level {stage.first} spans "
                    f"{list(output.shapes[stage.first])} voxels (x, y, z), which makes "
                    f"{positions:,} task positions and {pairs:,.0f} (task, tile) pairs (a plan "
                    f"holds at most 2^62 and {MAX_PAIRS:,}); check the tiles' positions and "
                    f"fusion.voxel_size, or use larger output.chunks and output.block")


def computed_voxels(output: OutputSpec, stages: tuple[Stage, ...], tasks: TaskPlan) -> int:
    """Voxels the block tasks compute over every level, for one channel and timepoint:
    the arrays' voxels where some tile reaches. Fewer than the arrays hold when tiles
    leave parts of the output empty (tiles far apart): no task computes those and no
    object stores them. Counted from the stages' boxes (`union_size`), without listing
    blocks."""
    total = 0
    edge = np.array(output.base.chunks, dtype=np.int64) * np.array(output.block, dtype=np.int64)
    for stage, stage_tasks in zip(stages, tasks.stages):
        lo = stage_tasks.lo * edge
        hi = np.minimum(stage_tasks.hi * edge, np.array(output.shapes[stage.first], dtype=np.int64))
        for level in range(stage.first, stage.first + stage.count):
            scale = np.array(output.cumulative(level)) // np.array(output.cumulative(stage.first))
            total += union_size(lo // scale, np.minimum(ceil_div(hi, scale),
                                                        np.array(output.shapes[level])))
    return total


# Blocks that compute this many times the voxels the tiles hold: more likely a wrong
# transform, calibration or voxel size than an intended output (fusion.voxel_size 0.25
# makes 64 ×; overlaps make it less).
SUSPICIOUS_GROWTH = 100


def growth_warning(output_voxels: int, tiles: tuple[tuple[TileSet, ...], ...]) -> str:
    """A warning when the blocks compute (`output_voxels`, every channel, timepoint and
    level) SUSPICIOUS_GROWTH times or more the voxels the tiles hold; '' otherwise."""
    held = sum(math.prod(t.size) for row in tiles for ts in row for t in ts)
    if not held or output_voxels < SUSPICIOUS_GROWTH * held:
        return ""
    return (f"the blocks compute {output_voxels:,} voxels from the tiles' {held:,} "
            f"({output_voxels / held:,.0f} ×): check the views' transforms and calibration and "
            f"fusion.voxel_size (a typo there inflates the output); fusion.bounding_box limits it")


def auto_blocks_per_task(output: OutputSpec, blocks: int, slots: int | None = None) -> int:
    """Blocks per task when the job does not say: TASK_BYTES of output per task, within
    [1, MAX_BLOCKS_PER_TASK], and no fewer than TASKS_PER_SLOT tasks per slot (MIN_TASKS
    when the slots are unknown) where blocks allow."""
    block_bytes = (math.prod(int(n) for n in output.block_grid(0).block_shape)  # exact: no wrap
                   * output.channels * np.dtype(output.base.dtype).itemsize)
    by_bytes = min(MAX_BLOCKS_PER_TASK, max(1, TASK_BYTES // block_bytes))
    least = TASKS_PER_SLOT * slots if slots else MIN_TASKS
    return max(1, min(by_bytes, blocks // least))


def tile_boxes(output: OutputSpec, tiles: TileSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The level-0 blocks each tile touches, as boxes [lo, hi) (n, 3), and each box's tile;
    tiles outside the output (`fusion.bounding_box`) have none."""
    origin = np.array(output.base.offset, dtype=np.int64)
    start = np.array([t.box.start for t in tiles], dtype=np.int64).reshape(-1, 3) - origin
    stop = np.array([t.box.stop for t in tiles], dtype=np.int64).reshape(-1, 3) - origin
    grid = output.block_grid(0)
    step = np.array(grid.block_shape)
    lo = np.maximum(start // step, 0)
    hi = np.minimum(ceil_div(stop, step), np.array(grid.counts))
    keep = np.all(hi > lo, axis=1)
    return lo[keep], hi[keep], np.array([t.index for t in tiles], dtype=np.int64)[keep]


def boxes_under(output: OutputSpec, level: int, lo0: np.ndarray, hi0: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The blocks at `level` under level-0 blocks [lo0, hi0): those that meet the boxes'
    voxels scaled down to `level`."""
    step0, shape0 = np.array(output.block_grid(0).block_shape), np.array(output.shapes[0])
    scale = np.array(output.cumulative(level))
    start = lo0 * step0 // scale
    stop = ceil_div(np.minimum(hi0 * step0, shape0), scale)
    grid = output.block_grid(level)
    step = np.array(grid.block_shape)
    return start // step, np.minimum(ceil_div(stop, step), np.array(grid.counts))


def _stage_objects(output: OutputSpec, stage: Stage, lo: np.ndarray, hi: np.ndarray) -> list[int]:
    """Per level of the stage, the objects (chunks or shards) of one array that its blocks
    own: the union of the boxes' regions at that level, on the level's object grid."""
    step, first_shape = np.array(output.block_grid(stage.first).block_shape), np.array(output.shapes[stage.first])
    counts = []
    for level in range(stage.first, stage.first + stage.count):
        relative = np.array(output.cumulative(level)) // np.array(output.cumulative(stage.first))
        shape = np.array(output.shapes[level])
        start = lo * step // relative
        stop = np.minimum(ceil_div(np.minimum(hi * step, first_shape), relative), shape)
        objects = object_grid(output.array(0, 0, level))
        unit = np.array(objects.chunk)
        counts.append(union_size(start // unit, np.minimum(ceil_div(stop, unit), np.array(objects.counts))))
    return counts


def _stage_tasks(stage: int, grid: Vec, lo: np.ndarray, hi: np.ndarray, owners: np.ndarray,
                 shape: Vec) -> StageTasks:
    """Index the partitions that meet the boxes, in Morton order, with their block counts.
    Written for millions of (partition, box) pairs: flat arrays, freed as soon as used."""
    size = np.array(shape, dtype=np.int64)
    per_axis = ceil_div(np.array(grid, dtype=np.int64), size)
    linear, box = linear_cells(lo // size, ceil_div(hi, size), per_axis)   # (partition, box) pairs
    by_id = np.argsort(linear, kind="stable")
    linear, box = linear[by_id], box[by_id]
    del by_id
    first = np.flatnonzero(np.concatenate([[True], linear[1:] != linear[:-1]])) if len(linear) else \
        np.zeros(0, np.int64)
    ids = linear[first]
    del linear
    sizes = np.diff(np.append(first, len(box)))
    run = morton_order(_unravel(ids, per_axis))
    run_sizes = sizes[run]
    boxes = box[np.repeat(first[run], run_sizes) + ranks_within(run_sizes)]
    del box
    starts = np.concatenate([[0], np.cumsum(run_sizes)])
    ordered = ids[run]
    counts = _partition_blocks(ordered, per_axis, size, np.array(grid), lo, hi, boxes, starts)
    return StageTasks(stage, tuple(grid), tuple(shape), lo, hi, owners, ordered, counts, starts, boxes)


def _unravel(ids: np.ndarray, per_axis: np.ndarray) -> np.ndarray:
    """Grid indices (n, 3) of linear ids (x fastest)."""
    return np.stack([ids % per_axis[0], ids // per_axis[0] % per_axis[1],
                     ids // (per_axis[0] * per_axis[1])], axis=1)


def _partition_blocks(ids, per_axis, size, grid, lo, hi, boxes, starts) -> np.ndarray:
    """Blocks in each partition: all of it where one box covers it whole (the common case,
    counted without listing anything), else the size of the clipped boxes' union."""
    start = _unravel(ids, per_axis) * size
    stop = np.minimum(start + size, grid)
    counts = np.prod(stop - start, axis=1)
    if (size == 1).all():
        return counts   # a box that meets a one-block partition covers it
    owner = np.repeat(np.arange(len(ids)), np.diff(starts))
    covers = np.ones(len(boxes), dtype=bool)
    for axis in range(3):   # one axis at a time: temporaries of one column
        covers &= lo[boxes, axis] <= start[owner, axis]
        covers &= hi[boxes, axis] >= stop[owner, axis]
    whole = np.logical_or.reduceat(covers, starts[:-1]) if len(ids) else np.zeros(0, bool)
    for k in np.flatnonzero(~whole):
        members = boxes[starts[k]:starts[k + 1]]
        counts[k] = union_size(np.maximum(lo[members], start[k]), np.minimum(hi[members], stop[k]))
    return counts
