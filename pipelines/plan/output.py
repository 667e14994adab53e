"""The output of an export: its arrays, pyramid levels and the stages that compute them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.config import JobConfig
from pipelines.config.output import check_layout_timepoints
from pipelines.errors import ConfigError, PlanError
from pipelines.formats import ArraySpec, compressor_for
from pipelines.geometry import BlockGrid, Box, ChunkGrid, Vec
from pipelines.layouts import paths as layouts
from pipelines.pixels import pyramid
from pipelines.tiles import TileSet
from pipelines.tiles.model import COORDINATE_LIMIT


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
    time_interval: float = 1.0      # per timepoint, in time_unit (OME's t axis)
    time_unit: str = ""

    @property
    def levels(self) -> int:
        return len(self.shapes)

    def cumulative(self, level: int) -> Vec:
        """Level `level`'s factors relative to level 0, per axis. (Pure Python: it is asked
        several times per block, and numpy's prod of a few small tuples costs 10 × more.)"""
        upto = self.factors[: level + 1]
        return tuple(math.prod(f[axis] for f in upto) for axis in range(3))

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


def _holds(target: np.dtype, tiles: np.dtype) -> bool:
    """Whether every label `tiles` can hold is exactly a value of `target`: every value of
    an integer type; of a float type, the whole numbers it holds exactly (to 2^24 for
    float32, either sign: trial AU, float32 labels up to 2000 merged into uint8's 255)."""
    if tiles.kind == "f":
        exact = 2 ** (np.finfo(tiles).nmant + 1)
        return target.kind == "f" and target.itemsize >= tiles.itemsize or \
            target.kind in "ui" and np.iinfo(target).min <= -exact and np.iinfo(target).max >= exact
    if target.kind == "f":
        return tiles.itemsize * 8 <= np.finfo(target).nmant + 1
    low, high = np.iinfo(tiles), np.iinfo(target)
    return target.kind in "ui" and high.min <= low.min and high.max >= low.max


def plan_output(config: JobConfig, first: TileSet, timepoints: int, channels: int) -> OutputSpec:
    """The output arrays: level 0 covers the union of the tile boxes (or
    `fusion.bounding_box`); the pyramid below."""
    out = config.output
    compressor = compressor_for(out.codec, out.format)
    check_layout_timepoints(out.layout, timepoints)   # a project's, counted only now
    bounds = first.bounds if config.bounding_box is None else _grid_box(config)
    if any(abs(v) > COORDINATE_LIMIT for v in (*bounds.start, *bounds.stop)):
        raise PlanError(f"the output would span {_world(bounds, config)} (voxels "
                        f"{list(bounds.start)} to {list(bounds.stop)}), beyond ±2^40 voxels per "
                        f"axis: check the tile positions or the views' transforms")
    if all(t.box.intersect(bounds).is_empty() for t in first):
        # a ConfigError about the key: `keys_named` says where it was set (file or --set)
        raise ConfigError(f"fusion.bounding_box = {[list(c) for c in config.bounding_box or ()]}: "
                          f"holds no part of any view (the views span {_world(first.bounds, config)})")
    if out.downsample == "mode" and out.dtype and not _holds(np.dtype(out.dtype), first.dtype):
        # trial AR: uint16 labels into uint8 merged every id from 255 up, exit 0
        raise ConfigError(f"output.dtype: {out.dtype!r} cannot hold every {first.dtype.name} value "
                          f"of the tiles, so labels beyond its range would be clipped and merge; "
                          f"with output.downsample = \"mode\" leave it unset (the tiles' type) or "
                          f"choose one that holds theirs")
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
                      tuple(factors), timepoints, channels, out.downsample, out.time_interval,
                      out.time_unit)


def _grid_box(config: JobConfig) -> Box:
    """fusion.bounding_box (world units) as output voxels: those whose centres lie inside."""
    assert config.bounding_box is not None
    low, high = config.bounding_box
    start = tuple(math.ceil(a / v - 1e-9) for a, v in zip(low, config.voxel_size))
    stop = tuple(math.floor(b / v + 1e-9) + 1 for b, v in zip(high, config.voxel_size))
    return Box(start, stop)


def _world(box: Box, config: JobConfig) -> str:
    """A grid box as world coordinates, for messages."""
    low = [round(a * v, 3) for a, v in zip(box.start, config.voxel_size)]
    high = [round((b - 1) * v, 3) for b, v in zip(box.stop, config.voxel_size)]
    return f"min {low}, max {high}"


def plan_stages(output: OutputSpec) -> tuple[Stage, ...]:
    """Group levels into passes: each pass computes as many levels as its blocks hold whole."""
    stages, first = [], 0
    while first < output.levels:
        relative = pyramid.cumulative_factors(output.factors[first + 1:])
        count = pyramid.in_block_levels(output.objects_per_block(), relative)
        stages.append(Stage(first, max(1, count)))
        first += max(1, count)
    return tuple(stages)
