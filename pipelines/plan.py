"""Planning on the driver: what the output is, which blocks exist, what each task needs.

`make_plan(config)` reads the tile JSON, checks every tile file, and returns an
`ExportPlan`: the output array, the block grid, one small `BlockTask` per block that some
tile touches (with the indices of those tiles), and the memory one task needs. Every
input error is raised here, before any task runs.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .config import JobConfig
from .errors import PlanError
from .formats import ArraySpec, compressor_for, format_module
from .geometry import BlockGrid, Box, ChunkGrid, grid_indices
from .tiles import Tile, TileSet, check_tile_file, read_tile_json

Vec = tuple[int, ...]
# Bytes per output voxel a task holds while fusing: float32 value and weight sums, the
# float32 weights and tile region of the tile being added, and the cast result.
_FUSION_BYTES_PER_VOXEL = 16


@dataclass(frozen=True)
class OutputSpec:
    """Where and how the fused volume is written."""

    uri: str
    format: str
    array: ArraySpec
    block: Vec  # chunks per block along x, y, z

    @property
    def chunk_grid(self) -> ChunkGrid:
        return ChunkGrid(self.array.shape, self.array.chunks)

    @property
    def block_grid(self) -> BlockGrid:
        return BlockGrid(self.chunk_grid, self.block)


@dataclass(frozen=True)
class BlockTask:
    """What an executor is sent for one block: its grid index and the tiles it reads."""

    index: Vec
    tiles: tuple[int, ...]


@dataclass(frozen=True)
class BlockReceipt:
    """What an executor returns for one block: a few hundred bytes, never pixels.

    `written` holds (chunk index, stored bytes, crc32 of the stored bytes) per chunk;
    `skipped` the chunks that equalled the fill value and so were not written.
    """

    block: Vec
    written: tuple[tuple[Vec, int, int], ...]
    skipped: tuple[Vec, ...]
    min: float
    max: float
    seconds: float = field(default=0.0, compare=False)

    @property
    def nbytes(self) -> int:
        return sum(n for _, n, _ in self.written)


@dataclass(frozen=True)
class ExportPlan:
    """Everything the driver decided before the first task runs."""

    output: OutputSpec
    tiles: TileSet
    tasks: tuple[BlockTask, ...]
    blending: str
    task_memory: int  # bytes one task needs at most
    fail_blocks: tuple[Vec, ...] = ()

    @property
    def offset(self) -> Vec:
        """Stage position of output voxel (0, 0, 0)."""
        return self.array.offset

    @property
    def array(self) -> ArraySpec:
        return self.output.array

    def tiles_of(self, task: BlockTask) -> list[Tile]:
        by_index = self.tiles.by_index()
        return [by_index[i] for i in task.tiles]


def make_plan(config: JobConfig, check_files: bool = True) -> ExportPlan:
    """Validate the inputs of `config` and plan the export; raises PipelineError subclasses."""
    compressor = compressor_for(config.output.codec, config.output.format)
    tiles = read_tile_json(config.tiles)
    if check_files:
        check_tile_files(tiles)
    bounds = tiles.bounds
    array = ArraySpec(
        path=config.output.dataset, shape=bounds.shape, chunks=config.output.chunks,
        dtype=tiles.dtype.name, compressor=compressor,
        resolution=tiles.pixel_resolution, offset=bounds.start,
    )
    output = OutputSpec(config.output.uri, config.output.format, array, config.output.block)
    tasks = block_tasks(output.block_grid, tiles, bounds.start)
    plan = ExportPlan(output, tiles, tasks, config.blending,
                      task_memory_bytes(output, tiles), config.fail_blocks)
    check_memory(plan, config.task_memory)
    return plan


def check_tile_files(tiles: TileSet, threads: int = 16) -> None:
    """Open every tile file's header (in parallel: on shared filesystems this is latency-bound)."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(check_tile_file, tiles):
            pass


def block_tasks(grid: BlockGrid, tiles: TileSet, offset: Vec) -> tuple[BlockTask, ...]:
    """One task per block that at least one tile touches, found tile by tile.

    Each tile lists the blocks its box touches, so the cost is the number of (tile, block)
    overlaps, not blocks × tiles. Blocks no tile touches hold only the fill value and are
    not scheduled.
    """
    touched: dict[Vec, list[int]] = defaultdict(list)
    for tile in tiles:
        placed = tile.box.relative_to(offset)
        lo, hi = grid.blocks_touching(placed)
        for index in grid_indices(hi, lo):
            touched[index].append(tile.index)
    return tuple(BlockTask(index, tuple(sorted(touched[index])))
                 for index in sorted(touched, key=lambda i: i[::-1]))


def task_memory_bytes(output: OutputSpec, tiles: TileSet) -> int:
    """Peak bytes a full block's task holds: fusion buffers plus one chunk's codec buffers."""
    voxels = int(np.prod(output.block_grid.block_shape))
    chunk_bytes = int(np.prod(output.array.chunks)) * np.dtype(output.array.dtype).itemsize
    read_bytes = tiles.dtype.itemsize  # the region read from the tile before conversion
    return voxels * (_FUSION_BYTES_PER_VOXEL + read_bytes) + 3 * chunk_bytes


def check_memory(plan: ExportPlan, budget: int) -> None:
    """Refuse a plan whose largest block cannot fit in the memory a task may use."""
    if plan.task_memory <= budget or not plan.tasks:
        return
    grid = plan.output.block_grid
    worst = max(plan.tasks, key=lambda t: grid.block_box(t.index).size)
    raise PlanError(
        f"block {list(worst.index)} ({' x '.join(map(str, grid.block_box(worst.index).shape))} "
        f"voxels) needs about {plan.task_memory / 2**20:.0f} MiB but limits.task_memory is "
        f"{budget / 2**20:.0f} MiB; use a smaller output.block or output.chunks, or raise "
        f"limits.task_memory (and the executors' memory with it)")


def block_box(plan: ExportPlan, task: BlockTask) -> Box:
    return plan.output.block_grid.block_box(task.index)


def chunk_key(plan: ExportPlan, chunk: Vec) -> str:
    return format_module(plan.output.format).chunk_key(plan.array, chunk)
