"""Fusion: blend the tiles that overlap one block into that block's voxels.

Blending rules (`fusion.blending`):
- `max`: the brightest tile wins;
- `average`: the plain mean of the tiles covering a voxel;
- `linear`: a weighted mean whose weight falls linearly towards each tile's edges, so
  across an overlap one tile fades out as the other fades in and no seam shows;
- `first`: the tile with the lowest index wins.
A voxel covered by one tile equals that tile under every rule; a voxel covered by none
is 0 (the fill value). The result is cast to the output type (rounded and clipped for
integer types). Tiles are always visited in ascending index order, so the result is a
pure function of the inputs: a retried task computes the same bytes.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .geometry import Box, to_zyx
from .pyramid import to_dtype
from .tiles import Tile, read_region

Reader = Callable[[Tile, Box], np.ndarray]


def fuse(block: Box, tiles: Iterable[Tile], offset, blending: str, dtype,
         read: Reader = read_region) -> np.ndarray:
    """The fused voxels of `block` (output coordinates) as a z, y, x array of `dtype`.

    `offset` is the stage position of output voxel (0, 0, 0); each tile sits at its
    rounded stage position minus `offset`.
    """
    shape = to_zyx(block.shape)
    value = np.zeros(shape, dtype=np.float32)
    weight = np.zeros(shape, dtype=np.float32)
    for tile in sorted(tiles, key=lambda t: t.index):
        placed = tile.box.relative_to(offset)
        overlap = placed.intersect(block)
        if overlap.is_empty():
            continue
        data = read(tile, overlap.relative_to(placed.start)).astype(np.float32, copy=False)
        at = overlap.relative_to(block.start).slices_zyx()
        _BLEND[blending](value[at], weight[at], data, lambda: edge_weights(tile, overlap, placed))
    if blending in ("average", "linear"):
        np.divide(value, weight, out=value, where=weight > 0)
    return cast(value, dtype)


def edge_weights(tile: Tile, region: Box, placed: Box) -> np.ndarray:
    """Linear blending weights of `region` inside a tile placed at `placed` (z, y, x).

    Per axis the weight is the distance to the nearer tile edge (in voxel centres), so it
    is largest in the middle and falls towards 0 at both edges; the 3D weight is the
    product over the axes.
    """
    factors = []
    for a, b, n, p in zip(region.start, region.stop, tile.size, placed.start):
        i = np.arange(a - p, b - p, dtype=np.float32) + 0.5
        factors.append(np.minimum(i, n - i))
    wx, wy, wz = factors
    return wz[:, None, None] * wy[None, :, None] * wx[None, None, :]


def cast(values: np.ndarray, dtype) -> np.ndarray:
    """Float voxels → `dtype`, rounding and clipping to its range for integer types."""
    return to_dtype(values, dtype)


def _max(value, weight, data, _):
    np.maximum(value, data, out=value, where=weight > 0)
    np.copyto(value, data, where=weight == 0)
    weight += 1


def _first(value, weight, data, _):
    np.copyto(value, data, where=weight == 0)  # lower indices came first and keep their voxels
    weight += 1


def _average(value, weight, data, _):
    value += data
    weight += 1


def _linear(value, weight, data, weights_of):
    w = weights_of()
    value += w * data
    weight += w


_BLEND = {"max": _max, "first": _first, "average": _average, "linear": _linear}
