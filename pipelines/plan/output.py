"""The output of an export: its arrays, pyramid levels and the stages that compute them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines import pyramid
from pipelines.config import JobConfig
from pipelines.errors import ConfigError
from pipelines.formats import ArraySpec, compressor_for
from pipelines.geometry import BlockGrid, ChunkGrid
from pipelines.layouts import paths as layouts
from pipelines.tiles import TileSet

Vec = tuple[int, ...]


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


def plan_stages(output: OutputSpec) -> tuple[Stage, ...]:
    """Group levels into passes: each pass computes as many levels as its blocks hold whole."""
    stages, first = [], 0
    while first < output.levels:
        relative = pyramid.cumulative_factors(output.factors[first + 1:])
        count = pyramid.in_block_levels(output.objects_per_block(), relative)
        stages.append(Stage(first, max(1, count)))
        first += max(1, count)
    return tuple(stages)
