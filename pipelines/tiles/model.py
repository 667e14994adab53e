"""The tile model: one TIFF stack (or later other source) placed at a stage position."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipelines.geometry import Box, triple

# stitching-spark's "type" field ↔ numpy dtype
TILE_TYPES: dict[str, np.dtype] = {"GRAY8": np.dtype("uint8"), "GRAY16": np.dtype("uint16"), "GRAY32": np.dtype("float32")}


def tile_type_of(dtype: np.dtype) -> str:
    """The stitching-spark type name for a numpy dtype."""
    for name, d in TILE_TYPES.items():
        if d == np.dtype(dtype):
            return name
    raise ValueError(f"no stitching-spark tile type for dtype {dtype}")


@dataclass(frozen=True)
class Tile:
    """One tile: where its pixels are and where it sits, all per-axis values in x, y, z."""

    index: int
    path: str
    position: tuple[float, float, float]
    size: tuple[int, int, int]
    pixel_resolution: tuple[float, float, float] = (1.0, 1.0, 1.0)
    type: str = "GRAY16"

    @property
    def dtype(self) -> np.dtype:
        return TILE_TYPES[self.type]

    @property
    def origin(self) -> tuple[int, int, int]:
        """The stage position rounded to whole voxels (fusion is on the voxel grid for now)."""
        return triple(int(np.floor(p + 0.5)) for p in self.position)

    @property
    def box(self) -> Box:
        """Voxels this tile covers, in acquisition (stage) coordinates."""
        return Box.from_shape(self.origin, self.size)


@dataclass(frozen=True)
class TileSet:
    """All tiles of one channel, as read from one tile configuration JSON."""

    tiles: tuple[Tile, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    @cached_property
    def bounds(self) -> Box:
        """The union of all tile boxes: the output volume, in stage coordinates."""
        box = self.tiles[0].box
        for t in self.tiles[1:]:
            box = box.union(t.box)
        return box

    @property
    def dtype(self) -> np.dtype:
        return self.tiles[0].dtype

    @property
    def pixel_resolution(self) -> tuple[float, float, float]:
        return self.tiles[0].pixel_resolution

    def by_index(self) -> dict[int, Tile]:
        return self._index

    @cached_property
    def _index(self) -> dict[int, Tile]:
        # cached: executors look tiles up for every task
        return {t.index: t for t in self.tiles}
