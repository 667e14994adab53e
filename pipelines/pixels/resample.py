"""Sampling a tile into a box of output voxels: at its stage position (a translation),
or through its affine: what one view contributes to the box.

A tile placed by a translation (`fusion.interpolation`, `INTERPOLATIONS`):
- `nearest`: the tile sits at its position rounded to whole voxels (`Tile.origin`);
- `linear`: the tile is resampled at its exact sub-voxel position (`Tile.position`)
  with trilinear interpolation.
For both rules the voxels a tile reaches lie in `Tile.box` (rounded origin, size), so
planning (which blocks a tile touches, bounds, memory) does not depend on the rule. Under
`linear`, output voxel i (per axis, stage coordinates) samples the tile at u = i - position,
and the tile covers it only where 0 <= u <= size - 1 on every axis (`fusion._reached`): a
voxel of the box beyond the outer pixel centres is left to other tiles, as a view placed
by an affine leaves it, instead of repeating the edge pixel. Trilinear interpolation is
separable; per axis, in the fixed order x, y, z,
value = (1 - t) * a[k] + t * a[k + 1] with k = floor(u), t = u - k, computed in float32.
Only the tile region a block needs is read, with a one-voxel margin clipped to the tile,
so each output voxel is computed from the same values in the same order whatever the
block decomposition. A tile whose position is exactly integer skips the resampling, so
it gives the same bytes under both rules (`sampler`, `sample_nearest`, `sample_linear`).

A view placed by an affine:

Output voxel p (integer output coordinates, voxel centres) lies at pixel coordinates
u = A⁻¹ · p of a view with affine A (`Tile.transform`). Only the view region the box's
voxels land in is read, plus the interpolation stencil. The view contributes to p where u
lies inside it: u in [0, n - 1] per axis for `linear` (trilinear) interpolation, in
(-0.5, n - 0.5] for `nearest`, which takes the pixel at u rounded half down (a placed
tile's position is rounded half up: the same pixels at the same voxels; a u within
`transforms.TIE` of a pixel edge counts as on it, so float noise in u, which differs with
the block's origin, does not pick the pixel) — and p inside the view's footprint
(`Tile.box`: the bounding box of its transformed corners, taken as far out as the
interpolation samples: `transforms.sample_reach`), which planning gives each block (trial
K: 2 901 border voxels of a sheared view were clipped where the footprint ended; trial Z:
nearest lost a view's first pixel column when its footprint ended at the pixel centres).
Its blending weight is computed in the view's own pixel
space: per axis the distance to the nearer border, min(u + 0.5, n - 0.5 - u), multiplied
over the axes (for a view placed by whole voxels this is `fusion.edge_weights`).

The sampling kernel (`pipelines.pixels.sampling_kernel.sample`, compiled with numba; imported
only when a view has an affine, so translation-only exports do not load numba in every
Python worker, 0.2 s each) visits each output voxel once:
it maps the voxel into the view, decides whether it lands inside, interpolates (`linear`:
trilinear, the 8 neighbours of u; `nearest`: the pixel at u rounded half down) and
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
from typing import NamedTuple

import numpy as np

from pipelines.geometry import Box, to_zyx
from pipelines.tiles import Tile
from pipelines.transforms import TIE, apply, corners, inverse, matrix, sample_reach

Reader = Callable[[Tile, Box], np.ndarray]

ORDERS = {"nearest": 0, "linear": 1}   # the sampling kernel's interpolation orders
INTERPOLATIONS = tuple(ORDERS)
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
    margin = sample_reach(interpolation)
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
    # border must not drop out over a rounding error of the inverse, nor one on an open
    # low edge (nearest: (-0.5, n - 0.5], `sample_reach`) come in over one (`TIE`: as
    # `footprint` judges that edge; the closed high edge has the footprint's clip too)
    low = -lo - (margin - TIE if margin else EDGE)
    high = size - 1 - lo + margin + EDGE
    from pipelines.pixels.sampling_kernel import sample
    sample(region, np.ascontiguousarray(linear[::-1, ::-1]), shift[::-1].copy(),
            low[::-1].astype(np.float64), high[::-1].astype(np.float64),
            (lo[::-1] + 0.5).astype(np.float64), size[::-1].astype(np.float64),
            ORDERS[interpolation], data, inside, weight)
    whole = bool(np.all(u.min(axis=0) - lo > low) and np.all(u.max(axis=0) - lo <= high))

    def near() -> np.ndarray:
        centre = apply(affine, ((size - 1) / 2.0)[None, :])[0] - np.asarray(offset)
        s = closeness(box, centre)
        s[~inside] = 0
        return s

    return Contribution(data, None if whole else inside, lambda: weight, near)


def sampler(interpolation: str) -> Callable[[Tile, Box, Reader], np.ndarray]:
    """How a tile placed by a translation is sampled under `interpolation` (one of
    `INTERPOLATIONS`; ValueError otherwise): `sample_nearest` or `sample_linear`."""
    if interpolation not in _SAMPLERS:
        raise ValueError(f"unknown interpolation {interpolation!r}; "
                         f"expected one of {', '.join(INTERPOLATIONS)}")
    return _SAMPLERS[interpolation]


def sample_nearest(tile: Tile, region: Box, read: Reader) -> np.ndarray:
    """`region` of the tile's box (relative to it), float32 z, y, x: the pixels themselves."""
    return read(tile, region).astype(np.float32, copy=False)


def sample_linear(tile: Tile, region: Box, read: Reader) -> np.ndarray:
    """`region` of the tile's box (relative to it), float32 z, y, x, resampled at the
    tile's sub-voxel position; reads `region` plus at most one voxel per side."""
    if tuple(float(p) for p in tile.position) == tile.origin:
        return sample_nearest(tile, region, read)  # whole voxels: same bytes as nearest
    axes = [_axis_samples(a, b, n, o, p) for a, b, n, o, p in
            zip(region.start, region.stop, tile.size, tile.origin, tile.position)]
    data = read(tile, Box(tuple(s.lo for s in axes), tuple(s.hi for s in axes)))
    out = np.empty(region.shape[::-1], np.float32)
    # slabs of output planes: interpolating the whole region at once held four times its
    # float32 values (trial AL: 12 bytes per voxel against nearest's 6, above the plan);
    # per slab only that slab's planes are, with the same operations per voxel
    step = max(1, SLAB_BYTES // (4 * out.shape[1] * out.shape[2]))
    for first in range(0, out.shape[0], step):
        out[first:first + step] = _slab(data, axes, first, min(first + step, out.shape[0]))
    return out


# float32 bytes of output planes interpolated at once (`sample_linear`)
SLAB_BYTES = 2 << 20


def _slab(data: np.ndarray, axes: list[_AxisSamples], first: int, last: int) -> np.ndarray:
    """Output planes [first, last) of `sample_linear`: the source planes they sample,
    interpolated along x, y, then z (a fixed order: every voxel goes through the same
    operations in any block and any slab)."""
    x, y, z = axes
    if z.k is None or z.k1 is None or z.t is None:   # z does not move: plane j is source plane j
        return _across(data[first:last], x, y)
    lo, hi = int(z.k[first]), int(z.k1[last - 1]) + 1
    return _interpolate(_across(data[lo:hi], x, y), z.k[first:last] - lo, z.k1[first:last] - lo,
                        z.t[first:last], 0)


def _across(planes: np.ndarray, x: _AxisSamples, y: _AxisSamples) -> np.ndarray:
    """`planes` interpolated along x, then y, where they move."""
    for numpy_axis, s in ((2, x), (1, y)):
        if s.k is not None and s.k1 is not None and s.t is not None:
            planes = _interpolate(planes, s.k, s.k1, s.t, numpy_axis)
    return planes


class _AxisSamples(NamedTuple):
    lo: int                  # source range [lo, hi) to read, relative to the tile
    hi: int
    k: np.ndarray | None     # per output voxel: source indices k, k + 1 relative to lo
    k1: np.ndarray | None
    t: np.ndarray | None     # and the weight of k + 1; all None when the axis does not move


def _axis_samples(start: int, stop: int, size: int, origin: int, position: float) -> _AxisSamples:
    """Per axis, what box voxels [start, stop) (relative to `origin`) sample at `position`."""
    if float(position) == origin:
        return _AxisSamples(start, stop, None, None, None)
    u = np.clip(np.arange(origin + start, origin + stop, dtype=np.float64) - position, 0, size - 1)
    k = np.floor(u).astype(np.intp)
    k1 = np.minimum(k + 1, size - 1)  # u = size - 1 has t = 0; k + 1 would leave the tile
    lo, hi = int(k[0]), int(k1[-1]) + 1
    return _AxisSamples(lo, hi, k - lo, k1 - lo, (u - k).astype(np.float32))


def _interpolate(data: np.ndarray, k: np.ndarray, k1: np.ndarray, t: np.ndarray,
                 axis: int) -> np.ndarray:
    """(1 - t) * data[k] + t * data[k + 1] along `axis`, in float32."""
    # in place: besides `data`, only two result-sized arrays are alive at any time
    shape = [1, 1, 1]
    shape[axis] = -1
    t = t.reshape(shape)
    a = np.take(data, k, axis=axis).astype(np.float32, copy=False)
    b = np.take(data, k1, axis=axis).astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):   # ±inf x 0 is NaN: NaN spreads, as documented
        a *= 1 - t
        b *= t
        a += b
    return a


_SAMPLERS = {"nearest": sample_nearest, "linear": sample_linear}
