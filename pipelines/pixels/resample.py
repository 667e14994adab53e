"""Sampling a view through its affine: what one view contributes to a box of output voxels.

Output voxel p (integer output coordinates, voxel centres) lies at pixel coordinates
u = A⁻¹ · p of a view with affine A (`Tile.transform`). Only the view region the box's
voxels land in is read, plus the interpolation stencil. The view contributes to p where u
lies inside it: u in [0, n - 1] per axis for `linear` (trilinear) interpolation, in
[-0.5, n - 0.5] for `nearest` — and p inside the view's footprint (`Tile.box`: the
bounding box of its transformed pixel-centre corners, BigStitcher's), which planning
gives each block, so the half pixel beyond the corners counts only where that box
reaches (trial K: 2 901 border voxels of a sheared view). Its blending weight is computed in the view's own pixel
space: per axis the distance to the nearer border, min(u + 0.5, n - 0.5 - u), multiplied
over the axes (for a view placed by whole voxels this is `fusion.edge_weights`).

The sampling kernel (`pipelines.pixels.sampling_kernel.sample`, compiled with numba; imported
only when a view has an affine, so translation-only exports do not load numba in every
Python worker, 0.2 s each) visits each output voxel once:
it maps the voxel into the view, decides whether it lands inside, interpolates (`linear`:
trilinear, the 8 neighbours of u; `nearest`: the pixel at round-half-up of u) and
computes the blending weight, all in one pass; numpy would need ~50 passes over the block
and scipy.ndimage's affine_transform took 5 × as long for the interpolation alone
(BENCHMARKS.md). It is a pure function of the region and the matrix, in IEEE arithmetic
(no fastmath), so a retried block computes the same bytes. (A voxel's coordinates are
computed relative to the region its block reads, so another cut of the output into blocks
may round a voxel one step differently; within a run every voxel belongs to one block, so
this never shows.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.geometry import Box, to_zyx
from pipelines.tiles import Tile
from pipelines.transforms import apply, corners, inverse, matrix

Reader = Callable[[Tile, Box], np.ndarray]

ORDERS = {"nearest": 0, "linear": 1}
EDGE = 1e-6   # pixels: tolerance of the inside test


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
    # region-local pixel coordinates of output voxel o (box-local): linear · o + shift;
    # the kernel works in numpy's z, y, x order
    shift = linear @ origin + m[:3, 3] - lo
    data = np.empty(to_zyx(box.shape), dtype=np.float32)
    inside = np.empty(data.shape, dtype=np.bool_)
    weight = np.empty(data.shape, dtype=np.float32)
    # the view's extent, region-local, with a hair of tolerance: a voxel on the view's
    # border must not drop out over a rounding error of the inverse
    low, high = -lo - margin - EDGE, size - 1 - lo + margin + EDGE
    from pipelines.pixels.sampling_kernel import sample
    sample(region, np.ascontiguousarray(linear[::-1, ::-1]), shift[::-1].copy(),
            low[::-1].astype(np.float64), high[::-1].astype(np.float64),
            (lo[::-1] + 0.5).astype(np.float64), size[::-1].astype(np.float64),
            ORDERS[interpolation], data, inside, weight)
    whole = bool(np.all(u.min(axis=0) >= -margin) and np.all(u.max(axis=0) <= size - 1 + margin))

    def near() -> np.ndarray:
        centre = apply(affine, ((size - 1) / 2.0)[None, :])[0] - np.asarray(offset)
        s = closeness(box, centre)
        s[~inside] = 0
        return s

    return Contribution(data, None if whole else inside, lambda: weight, near)
