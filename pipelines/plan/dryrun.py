"""Planning on paper: what an export would do, from the tile JSON alone.

`dry_run(config)` opens no tile file and lists no block or chunk. Counts come from the
union of the tiles' footprints on each grid (blocks per stage, objects per level),
measured on a compressed grid whose cells are bounded by the footprints' distinct edges:
its size grows with the number of tiles, never with the number of chunks, so a petabyte
job plans in the memory its tile list needs.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np

from pipelines.config import JobConfig
from pipelines.geometry import Vec
from pipelines.plan import OutputSpec, plan_output, plan_stages, read_tiles, task_memory_bytes
from pipelines.storage.s3 import S3Options
from pipelines.tiles import TileSet

# Cells of the compressed grid filled at once; larger grids are filled in slabs.
_CELLS_AT_ONCE = 1 << 26


@dataclass(frozen=True)
class DryRun:
    """What the export of a job would do."""

    tiles: int
    timepoints: int
    channels: int
    shapes: tuple[Vec, ...]                    # per level, x, y, z
    tasks: tuple[int, ...]                     # per stage, all timepoints
    objects: tuple[int, ...]                   # per level, all channels and timepoints: at most
    uncompressed_bytes: int
    task_memory: int
    seconds: float
    peak_rss: int                              # this process's peak resident memory, bytes

    def lines(self) -> list[str]:
        x, y, z = self.shapes[0]
        return [
            f"tiles:    {self.tiles} per channel, {self.channels} channel(s), "
            f"{self.timepoints} timepoint(s); level 0 x,y,z = [{x}, {y}, {z}], "
            f"{len(self.shapes)} level(s)",
            f"tasks:    {sum(self.tasks):,} in {len(self.tasks)} pass(es) "
            f"({', '.join(f'{n:,}' for n in self.tasks)})",
            f"objects:  at most {sum(self.objects):,} (empty ones are skipped); per level: "
            f"{', '.join(f'{n:,}' for n in self.objects)}",
            f"bytes:    {_size(self.uncompressed_bytes)} uncompressed over all levels",
            f"memory:   {_size(self.task_memory)} per task (limits.task_memory)",
            f"planning: {self.seconds:.2f} s, driver peak memory {_size(self.peak_rss)}",
        ]


def dry_run(config: JobConfig) -> DryRun:
    """Plan `config` from its tile JSONs; raises the same errors `make_plan` would, except
    those that need the tile files."""
    began = time.perf_counter()
    tiles = read_tiles(config, S3Options(**dict(config.s3)) if config.s3 else None)
    first = tiles[0][0]
    output = plan_output(config, first, len(tiles))
    stages = plan_stages(output)
    boxes = footprints(first)
    per_stage = tuple(len(tiles) * _stage_blocks(output, boxes, s.first) for s in stages)
    copies = output.timepoints * output.channels
    objects = tuple(copies * _level_objects(output, boxes, level) for level in range(output.levels))
    itemsize = np.dtype(output.base.dtype).itemsize
    voxels = sum(int(np.prod(shape, dtype=object)) for shape in output.shapes)
    return DryRun(len(first), output.timepoints, output.channels, output.shapes, per_stage,
                  objects, voxels * copies * itemsize, task_memory_bytes(output, first, stages),
                  time.perf_counter() - began,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def footprints(tiles: TileSet) -> tuple[np.ndarray, np.ndarray]:
    """Every tile's box relative to the output origin: (start, stop) arrays (n, 3), x, y, z."""
    origin = np.array(tiles.bounds.start, dtype=np.int64)
    start = np.array([t.box.start for t in tiles], dtype=np.int64) - origin
    return start, start + np.array([t.size for t in tiles], dtype=np.int64)


def _stage_blocks(output: OutputSpec, boxes, level: int) -> int:
    """Blocks of a stage: at level 0 those a tile touches; later, those at the stage's
    first level under a level-0 block (as `plan.block_tasks` chooses them)."""
    block0 = np.array(output.block_grid(0).block_shape)
    lo, hi = boxes[0] // block0, _ceil(boxes[1], block0)
    if level == 0:
        return union_size(lo, hi)
    scale = np.array(output.cumulative(level))
    start, stop = lo * block0 // scale, _ceil(np.minimum(hi * block0, output.shapes[0]), scale)
    block = np.array(output.block_grid(level).block_shape)
    return union_size(start // block, _ceil(stop, block))


def _level_objects(output: OutputSpec, boxes, level: int) -> int:
    """Objects (chunks or shards) of one array at `level` that some tile's data reaches."""
    scale = np.array(output.cumulative(level))
    unit = np.array(output.base.chunks) * np.array(output.base.shard or (1, 1, 1))
    return union_size(boxes[0] // scale // unit, _ceil(_ceil(boxes[1], scale), unit))


def _ceil(a, b):
    return -(-a // b)


def union_size(lo: np.ndarray, hi: np.ndarray) -> int:
    """Cells of the union of integer boxes [lo, hi) (arrays (n, 3)), on a compressed grid:
    cell edges are the boxes' distinct edges, each cell weighted by its size."""
    edges = [np.unique(np.concatenate([lo[:, a], hi[:, a]])) for a in range(3)]
    first = [np.searchsorted(edges[a], lo[:, a]) for a in range(3)]
    last = [np.searchsorted(edges[a], hi[:, a]) for a in range(3)]
    widths = [np.diff(e).astype(np.int64) for e in edges]
    cells = [len(e) - 1 for e in edges]
    slab = max(1, _CELLS_AT_ONCE // max(1, cells[1] * cells[2]))
    total = 0
    for x0 in range(0, cells[0], slab):   # slabs bound the memory of irregular layouts
        x1 = min(cells[0], x0 + slab)
        grid = np.zeros((x1 - x0, cells[1], cells[2]), dtype=bool)
        for n in np.flatnonzero((first[0] < x1) & (last[0] > x0)):
            grid[max(first[0][n], x0) - x0:min(last[0][n], x1) - x0,
                 first[1][n]:last[1][n], first[2][n]:last[2][n]] = True
        total += int(widths[0][x0:x1] @ ((grid.astype(np.int64) @ widths[2]) @ widths[1]))
    return total


def _size(n: int) -> str:
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 2**10:.1f} KiB"
