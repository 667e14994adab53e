"""The memory one block task needs, as named terms, and the check against the budget.

A task's peak is the larger of its compute terms (fusing at stage 0, reading the level
below at later stages) plus the codec term (one object being encoded, and the buffers of
the row of chunks copied before it) plus the tile cache its process keeps
(`limits.tile_cache`, shared by the blocks of a task) plus the Python worker's own memory
(`WORKER_BYTES`). BENCHMARKS.md compares the peak
with what workers really held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import PlanError
from pipelines.formats import format_module
from pipelines.formats.chunk_rows import ROW_CHUNKS
from pipelines.geometry import voxel_count
from pipelines.illumination.correct import CORRECTED_BYTES_PER_VOXEL
from pipelines.pixels.fusion import sums_dtype
from pipelines.plan.output import OutputSpec, Stage
from pipelines.tiles import TileSet
from pipelines.transforms import source_extent

if TYPE_CHECKING:
    from pipelines.plan import ExportPlan

# Bytes per output voxel a fusing task holds, by the size of its sums' type
# (`fusion.sums_dtype`): value and weight sums, the float32 weights and tile region of the
# tile being added — and with float64 sums the float64 product `_linear` adds (the cast
# result is counted apart, by the output's type).
FUSION_BYTES_PER_VOXEL = {4: 16, 8: 32}
# More bytes per output voxel while a view is sampled through its affine
# (pipelines.pixels.resample): its inside mask and weights, and the closeness for `closest`.
AFFINE_BYTES_PER_VOXEL = 12
# Bytes per source voxel a downsampling task holds besides the region read: float64 sums
# for mean; sorted window copies and run lengths for mode (measured up to 26 with float64).
DOWNSAMPLE_BYTES_PER_VOXEL = {"mean": 8, "mode": 24}
# Copies of one object's bytes alive while it is encoded: raw, padded, compressed.
CODEC_COPIES = 3
# A Python worker's own private memory besides its blocks: the interpreter with numpy,
# numcodecs, pyarrow (and numba where a kernel is compiled), its ledger and receipt
# buffers. Trial AL measured 105-157 MiB of RssAnon per worker over 2 048 tasks of blocks
# of 0.8-5 MiB, which the plan had called 0.8-5 MiB (a YARN container sized by it was
# short by that much per core). Memory-mapped tile pages are not in it (BENCHMARKS.md).
WORKER_BYTES = 160 << 20


@dataclass(frozen=True)
class TaskMemory:
    """Peak bytes of a full block's task, by term."""

    fusing: int    # stage 0: accumulators, the tile region being added, the cast result
    reading: int   # later stages: the region of the level below and downsampling temporaries
    codec: int     # one object (chunk or shard) being encoded, and its row's chunk buffers
    cache: int = 0  # decoded tile reads kept for the next blocks (limits.tile_cache)
    fields: int = 0  # flatfield fields, read once per process (illumination.fields)
    worker: int = WORKER_BYTES   # the Python worker itself: interpreter, libraries, buffers

    @property
    def peak(self) -> int:
        return max(self.fusing, self.reading) + self.codec + self.cache + self.fields + self.worker


def task_memory(output: OutputSpec, tiles: TileSet, stages: tuple[Stage, ...],
                tile_cache: int = 0, corrected: bool = False, fields: int = 0) -> TaskMemory:
    """The memory terms of the plan's largest block task, over all stages."""
    block = _largest_block(output, 0)
    voxels = voxel_count(block)
    itemsize = np.dtype(output.base.dtype).itemsize
    object_voxels = voxel_count(_largest_object(output))
    per_source_voxel = itemsize + DOWNSAMPLE_BYTES_PER_VOXEL[output.downsample]
    affine = [t for t in tiles if t.transform is not None]
    # the view region one block reads: the block itself, or what it spans in a view's pixels
    region = max((_region_voxels(t, block) for t in affine), default=voxels)
    sums = sums_dtype(output.base.dtype, [tiles.dtype]).itemsize
    per_voxel = FUSION_BYTES_PER_VOXEL[sums] + itemsize + (AFFINE_BYTES_PER_VOXEL if affine else 0)
    # a corrected read holds a float32 copy of the region (illumination.correct)
    per_region_voxel = tiles.dtype.itemsize + (CORRECTED_BYTES_PER_VOXEL if corrected else 0)
    return TaskMemory(
        fusing=voxels * per_voxel + region * per_region_voxel,
        reading=max((_source_voxels(output, s.first) * per_source_voxel for s in stages[1:]),
                    default=0),
        codec=(CODEC_COPIES * object_voxels + (_row_chunks(output) - 1) * voxel_count(_largest_chunk(output)))
        * itemsize, cache=tile_cache, fields=fields)


def _largest_block(output: OutputSpec, level: int) -> tuple[int, ...]:
    """The first block of a level's grid, clipped to the array: the largest there is (a
    whole block, or the whole array when one block holds it)."""
    return output.block_grid(level).block_box((0, 0, 0)).shape


def _largest_chunk(output: OutputSpec) -> tuple[int, ...]:
    """The largest chunk buffer: Zarr encodes edge chunks padded to the full chunk; N5
    stores them cut to the array."""
    if not format_module(output.format).EDGE_CHUNKS_CUT:
        return output.base.chunks
    return tuple(min(c, n) for c, n in zip(output.base.chunks, output.base.shape))


def _largest_object(output: OutputSpec) -> tuple[int, ...]:
    """The largest object encoded: a chunk, or a shard of chunks."""
    return tuple(c * s for c, s in zip(_largest_chunk(output), output.base.shard or (1, 1, 1)))


def _row_chunks(output: OutputSpec) -> int:
    """Chunk buffers filled in one copy (`formats.chunk_rows`): the chunks side by side
    along x in a block (in a shard, for sharded arrays), at most ROW_CHUNKS."""
    across = output.base.shard[0] if output.base.shard else \
        output.block_grid(0).block_shape[0] // output.base.chunks[0]
    return max(1, min(ROW_CHUNKS, across))


def _region_voxels(tile, block) -> int:
    extent = source_extent(tile.transform, block)
    return voxel_count([min(int(e) + 1, n) for e, n in zip(extent, tile.size)])


def task_memory_bytes(output: OutputSpec, tiles: TileSet, stages: tuple[Stage, ...],
                      tile_cache: int = 0, corrected: bool = False, fields: int = 0) -> int:
    """Peak bytes a full block's task holds, over all stages (`corrected`: tiles are read
    through the illumination corrections; `fields`: bytes of their flatfield fields)."""
    return task_memory(output, tiles, stages, tile_cache, corrected, fields).peak


def _source_voxels(output: OutputSpec, level: int) -> int:
    """Voxels a later-stage task reads from the level below: its block, scaled up, clipped."""
    block = _largest_block(output, level)
    below = output.shapes[level - 1]
    return voxel_count([min(b * f, n) for b, f, n in zip(block, output.factors[level], below)])


def check_memory(plan: ExportPlan, budget: int) -> None:
    """Refuse a plan whose largest block cannot fit in the memory a task may use."""
    check_task_memory(plan.output, plan.task_memory, plan.tile_cache, budget)


def check_task_memory(output: OutputSpec, needed: int, tile_cache: int, budget: int) -> None:
    """PlanError when a task needs more than `budget`: the check of `check_memory`, also
    made by the dry run, which has no ExportPlan."""
    if needed <= budget:
        return
    # what the figure holds besides the block's own work (trial X: "takes 256 MiB of it"
    # of a budget of 1 MiB; trial AL: the worker's own memory)
    included = [f"its Python worker's own {_mib(WORKER_BYTES)}"] + \
        ([f"limits.tile_cache's {_mib(tile_cache)}"] if tile_cache else [])
    grid = output.block_grid(0)
    worst = (0, 0, 0)  # the first block is the largest: it is whole, or the whole array
    fixed = WORKER_BYTES + tile_cache
    if budget <= fixed:   # no block can fit (review: the advice to shrink it could not work)
        raise PlanError(
            f"limits.task_memory is {_mib(budget)}, no more than a task's Python worker "
            f"({_mib(WORKER_BYTES)})" + (f" and limits.tile_cache ({_mib(tile_cache)})"
                                         if tile_cache else "") +
            f" alone: block {list(worst)} ({' x '.join(map(str, grid.block_box(worst).shape))} "
            f"voxels) needs {_mib_up(needed)} in all; raise limits.task_memory to that"
            + (", or lower limits.tile_cache" if tile_cache else ""))
    # a sharded array's block holds whole shards: a block of one shard cannot be smaller
    # (trial AL: the advice led to a second refusal)
    smaller = ("output.block (whole shards), output.shard or output.chunks" if output.base.shard
               else "output.block or output.chunks")
    raise PlanError(
        f"block {list(worst)} ({' x '.join(map(str, grid.block_box(worst).shape))} "
        f"voxels) needs {_mib_up(needed)} ({' and '.join(included)} included) but "
        f"limits.task_memory is {_mib(budget)}; use a smaller {smaller}, "
        + ("lower limits.tile_cache, " if tile_cache else "")   # trial M: the cache alone can be too much
        + "or raise limits.task_memory (and the executors' memory with it)")


def _mib_up(nbytes: int) -> str:
    """A need as MiB rounded up to a tenth (review: "416.2 MiB" rounded down, and a budget
    set to it was refused again)."""
    return f"{math.ceil(nbytes / 2**20 * 10) / 10:.1f} MiB"


def _mib(nbytes: int) -> str:
    """Bytes as MiB with one decimal; below a tenth of a MiB as bytes (not "0.0 MiB")."""
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 / 10 else f"{nbytes} byte" + ("s" * (nbytes != 1))
