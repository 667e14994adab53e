"""Planning on the driver: what the output is, which tasks exist, what each task needs.

`make_plan(config)` reads every tile JSON (timepoints × channels), checks every tile
file, and returns an `ExportPlan`:
- the output (`OutputSpec`): format, layout, the level-0 array and every pyramid level;
- stages: stage 0 fuses tiles into level 0 and, inside each block, the levels its block
  holds whole chunks of; each later stage reads the previous level from the store and
  computes the next levels, still one owner per object;
- one small `BlockTask` per (stage, timepoint, block) that has something to do;
- the memory one task needs. Every input error is raised here, before any task runs.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from pipelines import pyramid
from pipelines.config import JobConfig
from pipelines.errors import ConfigError, PlanError, TileError
from pipelines.formats import ArraySpec, compressor_for, format_module
from pipelines.formats.objects import object_keys
from pipelines.geometry import BlockGrid, Box, ChunkGrid, ceil_div, grid_indices
from pipelines.layouts import paths as layouts
from pipelines.storage.s3 import S3Options
from pipelines.tiles import Tile, TileSet, check_tile_file, read_tile_json

Vec = tuple[int, ...]
# Bytes per output voxel a fusing task holds: float32 value and weight sums, the float32
# weights and tile region of the tile being added, and the cast result.
_FUSION_BYTES_PER_VOXEL = 16
# Bytes per source voxel a downsampling task holds besides the region read: float64 sums
# for mean; sorted window copies and run lengths for mode (measured up to 26 with float64).
_DOWNSAMPLE_BYTES_PER_VOXEL = {"mean": 8, "mode": 24}


@dataclass(frozen=True)
class OutputSpec:
    """Where and how the fused volume and its pyramid are written."""

    uri: str
    format: str
    layout: str
    base: ArraySpec                 # level 0 of channel 0 (path set per array by the layout)
    block: Vec                      # chunks per block along x, y, z
    shapes: tuple[Vec, ...]         # per level
    factors: tuple[Vec, ...]        # per level, relative to the level below ((1,1,1) at 0)
    timepoints: int = 1
    channels: int = 1
    downsample: str = "mean"

    @property
    def levels(self) -> int:
        return len(self.shapes)

    def cumulative(self, level: int) -> Vec:
        return tuple(int(f) for f in np.prod(self.factors[: level + 1], axis=0))

    def array(self, t: int, c: int, level: int) -> ArraySpec:
        resolution = tuple(r * f for r, f in zip(self.base.resolution, self.cumulative(level)))
        return layouts.level_array(self.base, self.layout, self.timepoints, self.channels,
                                   t, c, level, self.shapes[level], resolution)

    def lead_index(self, t: int, c: int) -> Vec:
        return layouts.lead_index(self.layout, self.timepoints, self.channels, t, c)

    def arrays(self) -> list[ArraySpec]:
        """Every distinct array of the output (OME arrays hold all t and c)."""
        specs = {}
        for t in range(self.timepoints):
            for c in range(self.channels):
                for k in range(self.levels):
                    spec = self.array(t, c, k)
                    specs[spec.path] = spec
        return list(specs.values())

    def block_grid(self, level: int = 0) -> BlockGrid:
        return BlockGrid(ChunkGrid(self.shapes[level], self.base.chunks), self.block)

    def objects_per_block(self) -> Vec:
        """Blocks own whole objects: shards when sharded, else chunks."""
        shard = self.base.shard or (1, 1, 1)
        return tuple(b // s for b, s in zip(self.block, shard))


@dataclass(frozen=True)
class Stage:
    """Levels `first` … `first + count - 1`, computed by one pass of block tasks."""

    first: int
    count: int


@dataclass(frozen=True)
class BlockTask:
    """What an executor is sent for one block: stage, timepoint, grid index at the stage's
    first level, and (stage 0 only) the indices of the tiles it reads."""

    stage: int
    timepoint: int
    index: Vec
    tiles: tuple[int, ...] = ()

    @property
    def key(self) -> tuple:
        return (self.stage, self.timepoint, self.index)


@dataclass(frozen=True)
class BlockReceipt:
    """What an executor returns for one task: a few hundred bytes, never pixels.

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
class ExportPlan:
    """Everything the driver decided before the first task runs."""

    output: OutputSpec
    tiles: tuple[tuple[TileSet, ...], ...]  # per timepoint, per channel
    stages: tuple[Stage, ...]
    tasks: tuple[BlockTask, ...]
    blending: str
    task_memory: int  # bytes one task needs at most
    channel_names: tuple[str, ...] = ()
    fail_blocks: tuple[Vec, ...] = ()
    rerun: bool = False  # continuing an unfinished run of this job: clear objects now empty
    s3: S3Options | None = None  # how executors reach s3:// inputs and outputs
    task_delay: float = 0.0  # test hook (debug.task_delay); not part of the output's identity
    interpolation: str = "nearest"  # how sub-voxel tile positions are honoured (fusion)

    @property
    def offset(self) -> Vec:
        """Stage position of output voxel (0, 0, 0)."""
        return self.output.base.offset

    @property
    def array(self) -> ArraySpec:
        """Level 0 of the first channel and timepoint."""
        return self.output.array(0, 0, 0)

    def tasks_of(self, stage: int) -> tuple[BlockTask, ...]:
        return tuple(t for t in self.tasks if t.stage == stage)

    def tiles_of(self, task: BlockTask, channel: int) -> list[Tile]:
        by_index = self.tiles[task.timepoint][channel].by_index()
        return [by_index[i] for i in task.tiles]

    def level_box(self, task: BlockTask, level: int) -> Box:
        """The region (at `level`) a task computes: its block, scaled down from the stage's first level."""
        first = self.stages[task.stage].first
        box = self.output.block_grid(first).block_box(task.index)
        scale = tuple(a // b for a, b in zip(self.output.cumulative(level), self.output.cumulative(first)))
        stop = tuple(min(ceil_div(s, f), n) for s, f, n in zip(box.stop, scale, self.output.shapes[level]))
        return Box(tuple(s // f for s, f in zip(box.start, scale)), stop)

    def expected_keys(self, task: BlockTask) -> list[str]:
        """Every object key a task must write or report as skipped."""
        fmt, out, stage = format_module(self.output.format), self.output, self.stages[task.stage]
        keys = []
        for level in range(stage.first, stage.first + stage.count):
            box = self.level_box(task, level)
            for c in range(out.channels):
                keys += object_keys(fmt, out.array(task.timepoint, c, level), box,
                                    out.lead_index(task.timepoint, c))
        return keys


def make_plan(config: JobConfig, check_files: bool = True) -> ExportPlan:
    """Validate the inputs of `config` and plan the export; raises PipelineError subclasses."""
    s3 = S3Options(**dict(config.s3)) if config.s3 else None
    tiles = read_tiles(config, s3)
    if check_files:
        check_tile_files([t for row in tiles for ts in row for t in ts], s3)
    first = tiles[0][0]
    output = plan_output(config, first, len(tiles))
    stages = plan_stages(output)
    tasks = block_tasks(output, stages, first)
    names = config.channel_names or tuple(Path(p).stem for p in config.inputs[0])
    plan = ExportPlan(output, tiles, stages, tuple(tasks), config.blending,
                      task_memory_bytes(output, first, stages), names, config.fail_blocks, s3=s3,
                      task_delay=config.task_delay, interpolation=config.interpolation)
    check_memory(plan, config.task_memory)
    return plan


def read_tiles(config: JobConfig, s3: S3Options | None) -> tuple[tuple[TileSet, ...], ...]:
    """Every tile JSON of the job (timepoints × channels), checked to share one geometry."""
    tiles = tuple(tuple(read_tile_json(p, s3) for p in row) for row in config.inputs)
    check_same_geometry(tiles)
    return tiles


def plan_output(config: JobConfig, first: TileSet, timepoints: int) -> OutputSpec:
    """The output arrays: level 0 covers the union of the tile boxes; the pyramid below."""
    out = config.output
    compressor = compressor_for(out.codec, out.format)
    bounds = first.bounds
    base = ArraySpec(path="", shape=bounds.shape, chunks=out.chunks,
                     dtype=out.dtype or first.dtype.name, compressor=compressor,
                     resolution=first.pixel_resolution, offset=bounds.start, shard=out.shard)
    try:
        factors = [(1, 1, 1)] + pyramid.level_factors(bounds.shape, out.chunks,
                                                      first.pixel_resolution, out.levels)
    except ValueError as e:
        raise ConfigError(f"output.levels: {e}") from None
    return OutputSpec(out.uri, out.format, out.layout, base, out.block,
                      tuple(tuple(s) for s in pyramid.level_shapes(bounds.shape, factors[1:])),
                      tuple(factors), timepoints, len(config.inputs[0]), out.downsample)


def check_same_geometry(tiles: tuple[tuple[TileSet, ...], ...]) -> None:
    """Every channel and timepoint must describe the same tiles at the same places."""
    reference = tiles[0][0]
    shape = [(t.index, t.origin, t.size, t.type) for t in reference]
    for row in tiles:
        for other in row:
            if [(t.index, t.origin, t.size, t.type) for t in other] != shape:
                raise TileError(f"{other.source}: tile indices, positions, sizes or types differ "
                                f"from {reference.source}; all channels and timepoints must share "
                                f"one tile geometry")


def check_tile_files(tiles: list[Tile], s3: S3Options | None = None, threads: int = 16) -> None:
    """Open every tile file's header (in parallel: on shared filesystems and object stores
    this is latency-bound)."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(partial(check_tile_file, s3=s3), tiles):
            pass


def plan_stages(output: OutputSpec) -> tuple[Stage, ...]:
    """Group levels into passes: each pass computes as many levels as its blocks hold whole."""
    stages, first = [], 0
    while first < output.levels:
        relative = pyramid.cumulative_factors(output.factors[first + 1:])
        count = pyramid.in_block_levels(output.objects_per_block(), relative)
        stages.append(Stage(first, max(1, count)))
        first += max(1, count)
    return tuple(stages)


def block_tasks(output: OutputSpec, stages: tuple[Stage, ...], tiles: TileSet) -> list[BlockTask]:
    """Stage 0: one task per block some tile touches. Later stages: one per block of their
    first level that lies under a stage-0 block (elsewhere everything is fill)."""
    touched: dict[Vec, list[int]] = defaultdict(list)
    grid0, origin = output.block_grid(0), tiles.bounds.start
    for tile in tiles:
        lo, hi = grid0.blocks_touching(tile.box.relative_to(origin))
        for index in grid_indices(hi, lo):
            touched[index].append(tile.index)
    order = sorted(touched, key=lambda i: i[::-1])  # z, y, x: neighbours run close in time
    later = [_blocks_under(output, stage.first, order) for stage in stages[1:]]
    tasks = []
    for t in range(output.timepoints):
        tasks += [BlockTask(0, t, i, tuple(sorted(touched[i]))) for i in order]
        for n, blocks in enumerate(later, start=1):
            tasks += [BlockTask(n, t, i) for i in blocks]
    return tasks


def _blocks_under(output: OutputSpec, level: int, blocks0: list[Vec]) -> list[Vec]:
    grid0, grid = output.block_grid(0), output.block_grid(level)
    scale = output.cumulative(level)
    found = set()
    for index in blocks0:
        box = grid0.block_box(index)
        scaled = Box(tuple(s // f for s, f in zip(box.start, scale)),
                     tuple(ceil_div(s, f) for s, f in zip(box.stop, scale)))
        lo, hi = grid.blocks_touching(scaled)
        found.update(grid_indices(hi, lo))
    return sorted(found, key=lambda i: i[::-1])


def task_memory_bytes(output: OutputSpec, tiles: TileSet, stages: tuple[Stage, ...]) -> int:
    """Peak bytes a full block's task holds, over all stages."""
    voxels = int(np.prod(output.block_grid(0).block_shape))
    itemsize = np.dtype(output.base.dtype).itemsize
    object_voxels = int(np.prod(output.base.chunks)) * int(np.prod(output.base.shard or (1, 1, 1)))
    codec = 3 * object_voxels * itemsize
    fusing = voxels * (_FUSION_BYTES_PER_VOXEL + tiles.dtype.itemsize + itemsize)
    per_voxel = itemsize + _DOWNSAMPLE_BYTES_PER_VOXEL[output.downsample]
    reading = max((_source_voxels(output, s.first) * per_voxel for s in stages[1:]), default=0)
    return max(fusing, reading) + codec


def _source_voxels(output: OutputSpec, level: int) -> int:
    """Voxels a later-stage task reads from the level below: its block, scaled up, clipped."""
    block = output.block_grid(level).block_shape
    below = output.shapes[level - 1]
    return int(np.prod([min(b * f, n) for b, f, n in zip(block, output.factors[level], below)]))


def check_memory(plan: ExportPlan, budget: int) -> None:
    """Refuse a plan whose largest block cannot fit in the memory a task may use."""
    if plan.task_memory <= budget or not plan.tasks:
        return
    grid = plan.output.block_grid(0)
    worst = max(plan.tasks_of(0), key=lambda t: grid.block_box(t.index).size)
    raise PlanError(
        f"block {list(worst.index)} ({' x '.join(map(str, grid.block_box(worst.index).shape))} "
        f"voxels) needs about {plan.task_memory / 2**20:.1f} MiB but limits.task_memory is "
        f"{budget / 2**20:.1f} MiB; use a smaller output.block or output.chunks, or raise "
        f"limits.task_memory (and the executors' memory with it)")
