"""Downsampling for multiscale pyramids: how many levels, their shapes, and the pixels.

Per-axis values in this API are x, y, z like the rest of planning; the arrays that
`downsample` reads and returns are z, y, x numpy arrays, and the two orders meet only
through `geometry.to_zyx` / `to_xyz`.

Level k of a pyramid is `downsample(level k-1, factors[k-1])`: levels are built one step
at a time (not from level 0 with the cumulative factor), so a block that owns whole
windows at every step computes exactly the pixels a global pass would (`in_block_levels`).
"""

import math

import numpy as np

from pipelines.geometry import ceil_div, to_zyx

METHODS = ("mean", "mode")
_INTS = (int, np.integer)
_REALS = (int, float, np.integer, np.floating)
# A hair of slack so voxel sizes that are √2 apart on paper but not in binary floating
# point (a user's 1.4142135624 is 2e-11 above float √2) still count as "within √2".
_NEAR = math.sqrt(2) * (1 + 1e-9)


def _vec3(values, name: str, kinds: tuple = _INTS) -> tuple:
    """`values` as a 3-tuple of positive finite numbers of `kinds`, else ValueError."""
    try:
        vals = tuple(values)
    except TypeError:
        vals = ()
    ok = len(vals) == 3 and all(
        isinstance(v, kinds) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v) and v > 0
        for v in vals)
    if not ok:
        kind = "integers" if kinds is _INTS else "numbers"
        raise ValueError(f"{name} must be three positive {kind} (x, y, z), got {values!r}")
    return tuple(int(v) if kinds is _INTS else float(v) for v in vals)


def _check_levels(levels) -> int | None:
    """The level count as an int ≥ 1, or None for "auto"."""
    if isinstance(levels, str) and levels == "auto":
        return None
    if isinstance(levels, _INTS) and not isinstance(levels, (bool, np.bool_)) and levels >= 1:
        return int(levels)
    raise ValueError(f'levels must be an integer ≥ 1 or "auto", got {levels!r}')


def _step(shape: tuple, voxel: tuple) -> tuple:
    """One step's factors (x, y, z) under the anisotropy rule of `level_factors`."""
    # Axes already 1 voxel long cannot shrink, so they must not set the "finest" size
    # either: otherwise a one-plane volume would stop halving x and y after one step.
    live = [v for s, v in zip(shape, voxel) if s > 1]
    if not live:
        return (1, 1, 1)
    finest = min(live)
    return tuple(2 if s > 1 and v <= _NEAR * finest else 1 for s, v in zip(shape, voxel))


def _wants_more(shape: tuple, chunks: tuple, count: int | None, made: int) -> bool:
    """Whether to add another level: "auto" until one chunk holds it, else until `count`."""
    if count is None:
        return any(s > c for s, c in zip(shape, chunks))
    return made < count - 1


def level_factors(shape, chunks, resolution, levels) -> list[tuple[int, int, int]]:
    """Relative factors (x, y, z) from level k-1 to level k, for k = 1 .. n-1.

    Anisotropy rule: at each step an axis is halved when its current voxel size is within
    √2 of the finest current voxel size among the axes still longer than one voxel
    (v_a ≤ √2 · min v), else kept (factor 1); an axis already 1 voxel long is never
    shrunk. Voxel sizes start at `resolution` (x, y, z) and are multiplied by each step's
    factors, so (0.4, 0.4, 2.0) gives (2,2,1), (2,2,1), (2,2,2), ... and isotropic voxels
    give (2,2,2) every step. `levels` is the total level count n ≥ 1 (level 0 included) or
    "auto": add levels until the coarsest fits in one chunk on every axis, or nothing can
    shrink. ValueError for bad input, or if n levels are asked of a volume that reaches
    1×1×1 voxel before level n-1 (the extra levels would all be copies).
    """
    shape, chunks = _vec3(shape, "shape"), _vec3(chunks, "chunks")
    voxel = _vec3(resolution, "resolution", _REALS)
    count = _check_levels(levels)
    factors: list[tuple[int, int, int]] = []
    while _wants_more(shape, chunks, count, len(factors)):
        step = _step(shape, voxel)
        if step == (1, 1, 1):
            if count is None:
                break
            raise ValueError(f"levels={count} is too many: the volume is 1×1×1 voxel "
                             f"after {len(factors) + 1} levels")
        factors.append(step)
        shape = tuple(ceil_div(s, f) for s, f in zip(shape, step))
        voxel = tuple(v * f for v, f in zip(voxel, step))
    return factors


def level_shapes(shape, factors) -> list[tuple[int, int, int]]:
    """Shape (x, y, z) of every level: level 0 is `shape`, then ceil(previous / factor)."""
    shapes = [_vec3(shape, "shape")]
    for step in factors:
        step = _vec3(step, "factor")
        shapes.append(tuple(ceil_div(s, f) for s, f in zip(shapes[-1], step)))
    return shapes


def cumulative_factors(factors) -> list[tuple[int, int, int]]:
    """Factor (x, y, z) of every level relative to level 0: (1, 1, 1), then running products."""
    total = [(1, 1, 1)]
    for step in factors:
        step = _vec3(step, "factor")
        total.append(tuple(a * f for a, f in zip(total[-1], step)))
    return total


def in_block_levels(per_block, cumulative) -> int:
    """How many levels (level 0 included) a block of `per_block` chunks (x, y, z) can
    compute from its own level-0 data while owning whole chunks at each of them.

    `cumulative` is the list from `cumulative_factors`; level k qualifies when
    per_block % F_k == 0 on every axis and every lower level qualifies too.
    """
    # A block's level-k extent is per_block · chunk / F_k voxels and starts at a multiple
    # of it: a whole number of level-k chunks exactly when F_k divides per_block. Then
    # its level-0 extent is a whole number of windows at every step, so no window
    # straddles two blocks and the block's pixels equal the global pyramid's; only
    # the far edge of the volume cuts a block short, and it cuts the global pass there too.
    per_block = _vec3(per_block, "per_block")
    count = 0
    for total in cumulative:
        if any(p % f for p, f in zip(per_block, _vec3(total, "cumulative factor"))):
            break
        count += 1
    return count


def _axis_parts(size: int, factor: int) -> list[tuple[slice, slice, int]]:
    """(source slice, output slice, window) for the whole windows of one axis and its tail."""
    whole, tail = divmod(size, factor)
    parts = [(slice(0, whole * factor), slice(0, whole), factor)] if whole else []
    if tail:  # the partial last window: only the voxels that exist
        parts.append((slice(whole * factor, size), slice(whole, whole + 1), tail))
    return parts


def _regions(shape: tuple, factor: tuple) -> list[tuple]:
    """Split a z,y,x array into ≤ 8 regions, each tiled exactly by one window shape."""
    pz, py, px = (_axis_parts(n, f) for n, f in zip(shape, factor))
    return [tuple(zip(a, b, c)) for a in pz for b in py for c in px]


def _windows(region: np.ndarray, window: tuple) -> np.ndarray:
    """View a region as (z, wz, y, wy, x, wx); splitting an axis never copies."""
    z, y, x = (n // w for n, w in zip(region.shape, window))
    return region.reshape(z, window[0], y, window[1], x, window[2])


def _mean(region: np.ndarray, window: tuple) -> np.ndarray:
    """Window means in float64: one exact-as-possible sum, then one division."""
    with np.errstate(invalid="ignore"):   # +inf and -inf in one window: NaN, as documented
        return _windows(region, window).sum(axis=(1, 3, 5), dtype=np.float64) / math.prod(window)


def _mode(region: np.ndarray, window: tuple) -> np.ndarray:
    """Most frequent value per window, ties to the smallest; exact for every dtype."""
    z, y, x = (n // w for n, w in zip(region.shape, window))
    size = math.prod(window)
    values = _windows(region, window).transpose(0, 2, 4, 1, 3, 5).reshape(z, y, x, size)
    values = np.sort(values, axis=-1)
    # run[..., j] = length of the run of equal values ending at j. A value's count is the
    # run at its last copy; argmax takes the first maximum, and since values ascend that
    # is the smallest of the most frequent values. (NaN never equals itself: counts 1.)
    run = np.ones(values.shape, dtype=np.int32)
    for j in range(1, size):
        same = values[..., j] == values[..., j - 1]
        run[..., j] = np.where(same, run[..., j - 1] + 1, 1)
    best = run.argmax(axis=-1)[..., None]
    return np.take_along_axis(values, best, axis=-1)[..., 0]


def _int_bounds(dtype: np.dtype) -> tuple[float, float]:
    """The dtype's range as float64 values that convert back without overflow."""
    if dtype.kind == "b":
        return 0.0, 1.0
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    # float(2**64 - 1) rounds up to 2**64, which overflows uint64: step just below.
    return lo, (np.nextafter(hi, 0.0) if hi > info.max else hi)


def to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Float values → `dtype`: round half to even and clip into range for integers (NaN
    → 0), cast floats. 32- and 64-bit integer targets go through float64, because their bounds are
    not representable in float32 (2**31 - 1 would round up and wrap)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    if dtype.itemsize >= 4:
        values = values.astype(np.float64)
    rounded = np.clip(np.rint(values), *_int_bounds(dtype))
    np.copyto(rounded, 0, where=np.isnan(rounded))   # NaN → 0 on every platform
    return rounded.astype(dtype)


def downsample(data: np.ndarray, factor, method: str = "mean") -> np.ndarray:
    """Reduce a z,y,x array by `factor` (x, y, z) with windows of factor voxels per axis.

    The result has ceil(shape / factor) voxels per axis and `data`'s dtype. Windows cut
    short by the far edges use only the voxels that exist (no padding). "mean" averages
    in float64, then integers are rounded half to even and clipped into the dtype's range;
    "mode" picks each window's most frequent value, ties to the smallest (label images).
    """
    data = np.asarray(data)
    step = to_zyx(_vec3(factor, "factor"))
    if data.ndim != 3 or data.dtype.kind not in "biuf":
        raise ValueError(f"data must be a 3-D z,y,x array of bool, int or float, got "
                         f"{data.ndim}-D {data.dtype}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if step == (1, 1, 1):  # nothing to reduce; skip a float64 round trip
        return data.copy()
    reduce = _mean if method == "mean" else _mode
    out = np.empty(tuple(ceil_div(n, f) for n, f in zip(data.shape, step)),
                   dtype=np.float64 if method == "mean" else data.dtype)
    for source, target, window in _regions(data.shape, step):
        out[target] = reduce(data[source], window)
    return to_dtype(out, data.dtype) if method == "mean" else out
