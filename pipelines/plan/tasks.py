"""Block tasks: what an executor is sent for one block, and what it sends back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pipelines.geometry import Box, ceil_div, grid_indices
from pipelines.plan.output import OutputSpec, Stage
from pipelines.tiles import TileSet

Vec = tuple[int, ...]


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
    found: set[Vec] = set()
    for index in blocks0:
        box = grid0.block_box(index)
        scaled = Box(tuple(s // f for s, f in zip(box.start, scale)),
                     tuple(ceil_div(s, f) for s, f in zip(box.stop, scale)))
        lo, hi = grid.blocks_touching(scaled)
        found.update(grid_indices(hi, lo))
    return sorted(found, key=lambda i: i[::-1])
