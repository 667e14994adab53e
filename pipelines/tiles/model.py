"""The tile model: one view's pixels (a TIFF stack, or a dataset in an N5, Zarr or HDF5
container) placed in the output's coordinates by a stage position or an affine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from pipelines.geometry import Box, triple
from pipelines.transforms import (
    Affine,
    compose,
    footprint,
    is_translation,
    offset_of,
    sample_reach,
    scaling,
    translation,
)

# stitching-spark's "type" field ↔ numpy dtype
TILE_TYPES: dict[str, np.dtype] = {"GRAY8": np.dtype("uint8"), "GRAY16": np.dtype("uint16"), "GRAY32": np.dtype("float32")}


def placement(transform: Affine) -> tuple[tuple[float, float, float], Affine | None]:
    """(position, transform) of a tile placed by an affine: a pure translation becomes a
    position (the translation path: its copy fast path and its bytes), anything else
    keeps its affine (position: its translation column, for reports)."""
    return offset_of(transform), None if is_translation(transform) else transform


def tile_type_of(dtype: np.dtype) -> str:
    """The stitching-spark type name for a numpy dtype."""
    for name, d in TILE_TYPES.items():
        if d == np.dtype(dtype):
            return name
    raise ValueError(f"no stitching-spark tile type for dtype {dtype}")


# The largest coordinate (voxels, per axis) a tile may have and an output may span: grid
# arithmetic in int64 and float64 stays exact far beyond it, and every format addresses it.
COORDINATE_LIMIT = 2**40
# The physical size of a voxel (pixelResolution, a BigStitcher voxelSize), in its unit:
# written to the metadata times up to 2^40 (downsampling) and fusion.voxel_size (1e6), so
# it must stay far from overflowing to inf there, and from 0.
RESOLUTION_RANGE = (1e-9, 1e9)
# A tile's or view setup's id (and a timepoint's): Java's int, as BigStitcher stores them.
ID_LIMIT = 2**31

# where a tile's pixels are (`Tile.loader`); each is a reader in pipelines.tiles.readers
LOADERS = ("tiff", "n5", "zarr", "hdf5")


@dataclass(frozen=True)
class Tile:
    """One tile (a view): where its pixels are and where it sits, per-axis values x, y, z.

    A tile sits either at `position` (a translation; stitching-spark's tile JSON) or, when
    `transform` is set, by that affine from its pixel coordinates to the output's
    coordinates (stage / world units scaled to output voxels; `pipelines.transforms`).
    `pixel_resolution` is the physical size (µm) of one unit of those coordinates.
    """

    index: int
    path: str
    position: tuple[float, float, float]
    size: tuple[int, int, int]
    pixel_resolution: tuple[float, float, float] = (1.0, 1.0, 1.0)
    type: str = "GRAY16"
    transform: Affine | None = None
    loader: str = "tiff"   # one of LOADERS
    dataset: str = ""      # inside a container (n5, zarr, hdf5): the array's path
    label: str = ""        # how messages name the view, e.g. "view setup 3, timepoint 0"
    reach: float = 0.0     # with a transform: how far past its outer pixel centres it is
    #                        sampled (`transforms.sample_reach` of the job's interpolation)

    @property
    def dtype(self) -> np.dtype:
        return TILE_TYPES[self.type]

    @property
    def origin(self) -> tuple[int, int, int]:
        """The stage position rounded to whole voxels (fusion is on the voxel grid for now)."""
        return triple(int(np.floor(p + 0.5)) for p in self.position)

    @property
    def box(self) -> Box:
        """Voxels this tile covers, in acquisition (stage) coordinates: its size at the
        rounded position, or the footprint of its affine."""
        if self.transform is not None:
            return self._footprint
        return Box.from_shape(self.origin, self.size)

    @cached_property
    def _footprint(self) -> Box:
        assert self.transform is not None
        return footprint(self.transform, self.size, self.reach)

    @property
    def name(self) -> str:
        """The tile as messages name it."""
        return self.label or f"tile {self.index}"


@dataclass(frozen=True)
class TileSet:
    """All tiles of one channel, as read from one tile configuration JSON (or a project's
    views of one channel and timepoint)."""

    tiles: tuple[Tile, ...]
    source: str = ""
    channel_id: int | None = None   # a BigStitcher project's channel id (files named by it)

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

    def on_grid(self, voxel_size: tuple[float, float, float], interpolation: str) -> TileSet:
        """These tiles placed on an output grid of `voxel_size` stage (world) units per
        voxel (`fusion.voxel_size`) and sampled by `interpolation` (`fusion.interpolation`):
        every transform scaled by 1 / voxel_size, each unit's physical size scaled by
        voxel_size, and each tile placed by an affine reaching as far as that
        interpolation samples it (`Tile.reach`). (1, 1, 1) and "linear" change nothing."""
        tiles = self.tiles
        if tuple(voxel_size) != (1.0, 1.0, 1.0):
            shrink = scaling([1.0 / v for v in voxel_size])
            scaled = []
            for t in tiles:
                position, transform = placement(compose(shrink, t.transform or translation(t.position)))
                scaled.append(replace(t, position=position, transform=transform, pixel_resolution=triple(
                    r * v for r, v in zip(t.pixel_resolution, voxel_size))))
            tiles = tuple(scaled)
        reach = sample_reach(interpolation)
        tiles = tuple(replace(t, reach=reach) if t.transform is not None and t.reach != reach else t
                      for t in tiles)
        unchanged = all(a is b for a, b in zip(tiles, self.tiles))   # no deep compare of 100 000
        return self if unchanged else replace(self, tiles=tiles)
