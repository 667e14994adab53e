"""Applying the corrections on the executor, while a tile region is read.

A `Correction` is what the plan carries to executors: per channel the flatfield folder
(or none) and per tile the intensity (gain, offset). `read_corrected` reads a region with
`read_region`, then computes (raw - T) * (gain / S) + offset in float32 over only the
region's part of the fields, before fusion interpolates and blends. Every voxel goes
through the same float32 operations in the same order whatever block asks for it, so
chunks stay a pure function of the inputs; the tiles on disk are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from pipelines.geometry import Box
from pipelines.illumination.fields import load_fields, plane_at
from pipelines.tiles import Tile, read_region

Reader = Callable[[Tile, Box], np.ndarray]
Coefficients = tuple[tuple[int, float, float], ...]   # (tile index, gain, offset)


@dataclass(frozen=True)
class Correction:
    """What executors need to correct one job's tiles (small: paths and numbers)."""

    flatfield: tuple[str, ...] = ()                  # per channel: fields folder, "" = none
    intensity: tuple[Coefficients, ...] = ()         # per channel: per tile (gain, offset)
    digests: tuple[str, ...] = ()                    # per channel: sha256 of S.tif and T.tif
    field_bytes: int = 0                             # S and T of every channel, as read
    _lookup: dict = field(default_factory=dict, compare=False, repr=False)

    def folder(self, channel: int) -> str:
        return self.flatfield[channel] if channel < len(self.flatfield) else ""

    def coefficients(self, channel: int, tile: int) -> tuple[float, float] | None:
        """The tile's (gain, offset), or None when intensities are not matched."""
        if channel >= len(self.intensity):
            return None
        if channel not in self._lookup:
            self._lookup[channel] = {i: (g, o) for i, g, o in self.intensity[channel]}
        return self._lookup[channel].get(tile)


def tile_reader(correction: Correction | None, channel: int, s3=None) -> Reader:
    """The reader fusion uses for one channel: plain `read_region` without corrections."""
    if correction is None or not (correction.folder(channel) or correction.intensity):
        return partial(read_region, s3=s3)
    return partial(read_corrected, correction=correction, channel=channel, s3=s3)


def read_corrected(tile: Tile, region: Box, correction: Correction, channel: int,
                   s3=None) -> np.ndarray:
    """`region` of the tile (x, y, z relative to it) as corrected float32 z, y, x values."""
    data = read_region(tile, region, s3).astype(np.float32)   # a copy: the tile stays as it is
    folder = correction.folder(channel)
    found = correction.coefficients(channel, tile.index)
    scale = np.float32(found[0] if found is not None else 1.0)
    if folder:
        gain, offset = load_fields(folder, s3)
        _, ys, xs = region.slices_zyx()
        if gain.ndim == 2:
            data -= offset[ys, xs]
            data *= scale / gain[ys, xs]   # one plane of factors: a multiply per voxel, not two
        else:   # fields that change with depth: each slice's own plane
            for i, z in enumerate(range(region.start[2], region.stop[2])):
                data[i] -= plane_at(offset, z, tile.size[2])[ys, xs]
                data[i] *= scale / plane_at(gain, z, tile.size[2])[ys, xs]
    elif found is not None:
        data *= scale
    if found is not None:
        data += np.float32(found[1])
    return data


# Bytes per tile voxel a corrected read adds to a fusing task: its float32 copy.
CORRECTED_BYTES_PER_VOXEL = 4
