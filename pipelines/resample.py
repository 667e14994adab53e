"""Sampling a view through its affine: what one view contributes to a box of output voxels.

Output voxel p (integer output coordinates, voxel centres) lies at pixel coordinates
u = A⁻¹ · p of a view with affine A (`Tile.transform`). Only the view region the box's
voxels land in is read, plus the interpolation stencil. The view contributes to p where u
lies inside it: u in [0, n - 1] per axis for `linear` (trilinear) interpolation, in
[-0.5, n - 0.5] for `nearest`. Its blending weight is computed in the view's own pixel
space: per axis the distance to the nearer border, min(u + 0.5, n - 0.5 - u), multiplied
over the axes (for a view placed by whole voxels this is `fusion.edge_weights`).

Interpolation is scipy.ndimage's affine_transform (spline order 1 or 0, no prefilter):
C speed, and a pure function of the region and matrix, so a retried block computes the
same bytes. (A voxel's coordinates are computed relative to the region its block reads, so
another cut of the output into blocks may round a voxel one step differently; within a
run every voxel belongs to one block, so this never shows.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from pipelines.geometry import Box, to_zyx
from pipelines.tiles import Tile
from pipelines.transforms import apply, corners, inverse, matrix

Reader = Callable[[Tile, Box], np.ndarray]

ORDERS = {"nearest": 0, "linear": 1}


class Contribution:
    """One view's values over a box (float32, z, y, x), where it covers them (`inside`: a
    boolean array, or None when it covers every voxel) and, on demand, its blending
    weights and its closeness (for `closest`: larger is nearer the view's centre)."""

    def __init__(self, data: np.ndarray, inside: np.ndarray | None,
                 weights: Callable[[], np.ndarray], closeness: Callable[[], np.ndarray]):
        self.data, self.inside = data, inside
        self.weights, self.closeness = weights, closeness


def closeness(box: Box, centre) -> np.ndarray:
    """1 / (1 + d²) over `box` (z, y, x), d the distance from each voxel to `centre`
    (x, y, z, same coordinates as the box)."""
    axes = [(np.arange(a, b, dtype=np.float64) - c) ** 2 for a, b, c in zip(box.start, box.stop, centre)]
    dx, dy, dz = axes
    d2 = dz[:, None, None] + dy[None, :, None] + dx[None, None, :]
    return (1.0 / (1.0 + d2)).astype(np.float32)


def sample_affine(tile: Tile, box: Box, offset, read: Reader, interpolation: str) -> Contribution | None:
    """What `tile` (which has a transform) contributes to `box` (output voxels relative to
    `offset`); None when none of the box's voxels land inside it."""
    affine = tile.transform
    assert affine is not None
    inv = inverse(affine)
    origin = np.asarray(box.start, dtype=np.float64) + np.asarray(offset, dtype=np.float64)
    u = apply(inv, corners(box.shape) + origin)        # the box's corners, in view pixels
    size = np.asarray(tile.size, dtype=np.int64)
    margin = 0.5 if interpolation == "nearest" else 0.0
    if np.any(u.max(axis=0) < -margin) or np.any(u.min(axis=0) > size - 1 + margin):
        return None
    lo = np.clip(np.floor(u.min(axis=0)).astype(np.int64), 0, size - 1)
    hi = np.clip(np.floor(u.max(axis=0)).astype(np.int64) + 2, 1, size)
    region = read(tile, Box(tuple(int(v) for v in lo), tuple(int(v) for v in hi)))

    m = matrix(inv)
    linear = m[:3, :3]
    # region-local pixel coordinates of output voxel o (box-local): linear · o + shift
    shift = linear @ origin + m[:3, 3] - lo
    data = np.empty(to_zyx(box.shape), dtype=np.float32)
    ndimage.affine_transform(region, linear[::-1, ::-1], shift[::-1], output=data,
                             order=ORDERS[interpolation], mode="nearest", prefilter=False)

    def coordinate(axis: int) -> np.ndarray:
        """Region-local pixel coordinate along `axis` of every voxel of the box (float32)."""
        cx, cy, cz = (linear[axis, j] for j in range(3))
        x, y, z = (np.arange(n, dtype=np.float64) for n in box.shape)
        rows = (cz * z[:, None, None] + cy * y[None, :, None] + shift[axis]).astype(np.float32)
        return rows + (cx * x).astype(np.float32)[None, None, :]

    low, high = -lo - margin, size - 1 - lo + margin    # the view's extent, region-local
    whole = bool(np.all(u.min(axis=0) >= -margin) and np.all(u.max(axis=0) <= size - 1 + margin))
    inside = None
    if not whole:
        inside = np.ones(data.shape, dtype=bool)
        for axis in range(3):
            c = coordinate(axis)
            inside &= (c >= low[axis]) & (c <= high[axis])

    def weights() -> np.ndarray:
        w = np.ones(data.shape, dtype=np.float32)
        for axis in range(3):
            c = coordinate(axis) + np.float32(lo[axis] + 0.5)   # u + 0.5
            np.minimum(c, np.float32(size[axis]) - c, out=c)    # distance to the nearer border
            np.maximum(c, 0, out=c)
            w *= c
        if inside is not None:
            w[~inside] = 0
        return w

    def near() -> np.ndarray:
        centre = apply(affine, ((size - 1) / 2.0)[None, :])[0] - np.asarray(offset)
        s = closeness(box, centre)
        if inside is not None:
            s[~inside] = 0
        return s

    return Contribution(data, inside, weights, near)
