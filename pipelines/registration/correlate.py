"""Measuring the translation between two overlapping crops: pure numpy, no I/O.

Arrays are z, y, x; every displacement here is z, y, x too (numpy order). A displacement
`d` says where crop `b`'s first voxel lies in crop `a`'s voxel coordinates: voxel u of `a`
shows the same sample point as voxel u - d of `b`.

How a shift is found (coarse to fine, always inside the window the stage offset allows):
1. both crops are lightly blurred against shot noise and binned; at the coarsest level a
   heavy blur is also subtracted, removing the background and illumination gradients,
   which correlate at any displacement and would flatten the score surface;
2. FFTs give, for every displacement at once, the normalised cross-correlation (NCC) over
   exactly the voxels the two crops share there (so a thin overlap is scored fairly) and
   the phase correlation (the same product with a flattened spectrum);
3. the best few peaks of each inside the window, and the NCC's most significant few
   (weighed by the voxels they share), are followed down a pyramid of halved
   binning factors by hill-climbing the NCC, and the best full-resolution NCC wins;
4. a winner pressed against the window's edge, with a better score just outside it, is
   no peak and is dropped (`peaks_here`);
5. the winner gets a sub-voxel offset from a parabola through its neighbours' NCC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.geometry import Vec


@dataclass(frozen=True)
class Window:
    """Allowed displacements: `centre` ± `radius` per axis (z, y, x), each keeping at least
    `min_overlap` voxels of overlap per axis."""

    centre: Vec
    radius: Vec
    min_overlap: Vec

    def scaled(self, factor: Sequence[int]) -> Window:
        """The same window in binned coordinates (rounded outwards)."""
        if all(f == 1 for f in factor):
            return self
        return Window(tuple(int(np.floor(c / f)) for c, f in zip(self.centre, factor)),
                      tuple(-(-r // f) + 1 for r, f in zip(self.radius, factor)),
                      tuple(max(1, m // f) for m, f in zip(self.min_overlap, factor)))

    def allows(self, d: Sequence[int], shape_a: Sequence[int], shape_b: Sequence[int]) -> bool:
        return all(abs(v - c) <= r and _overlap_len(v, na, nb) >= m
                   for v, c, r, m, na, nb in zip(d, self.centre, self.radius, self.min_overlap,
                                                 shape_a, shape_b))


@dataclass(frozen=True)
class Match:
    """The measured displacement (z, y, x, sub-voxel) and its NCC at the integer peak."""

    displacement: tuple[float, ...]
    score: float
    overlap: int          # voxels shared at the integer peak


def _overlap_len(d: int, na: int, nb: int) -> int:
    return min(na, d + nb) - max(0, d)


def shared(shape_a: Sequence[int], shape_b: Sequence[int], d: Sequence[int]):
    """Slices of `a` and of `b` that show the same points at displacement `d`, or None."""
    sa, sb = [], []
    for v, na, nb in zip(d, shape_a, shape_b):
        lo, hi = max(0, v), min(na, v + nb)
        if hi <= lo:
            return None
        sa.append(slice(lo, hi))
        sb.append(slice(lo - v, hi - v))
    return tuple(sa), tuple(sb)


def ncc_at(a: np.ndarray, b: np.ndarray, d: Sequence[int]) -> float:
    """NCC of the voxels `a` and `b` share at displacement `d` (-1 when none or flat)."""
    cut = shared(a.shape, b.shape, d)
    if cut is None:
        return -1.0
    pa, pb = a[cut[0]], b[cut[1]]
    pa = pa - pa.mean(dtype=np.float64)
    pb = pb - pb.mean(dtype=np.float64)
    denom = np.sqrt(np.vdot(pa, pa) * np.vdot(pb, pb))
    return float(np.vdot(pa, pb) / denom) if denom > 0 else -1.0


def correlation_surfaces(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NCC and phase correlation at every displacement at once.

    Element [i, j, k] of both is displacement (i - nb_z + 1, j - nb_y + 1, k - nb_x + 1):
    the full range of linear overlaps. NCC sums over the shared part are correlations of
    the zero-padded crops and of their supports (all ones: a crop lies wholly inside its
    tile); real FFTs in float32 halve the memory. Phase correlation is the same product
    with a flattened spectrum: very sharp peaks on clean data, false ones on noise.
    """
    shape = tuple(_fast_size(na + nb - 1) for na, nb in zip(a.shape, b.shape))
    axes = tuple(range(a.ndim))
    a = (a - a.mean()) / (a.std() or 1.0)       # rescaled so float32 sums keep precision
    b = (b - b.mean()) / (b.std() or 1.0)
    spec = lambda x: np.fft.rfftn(x.astype(np.float32, copy=False), shape, axes=axes)

    def corr(product):  # sum_u x[u] y[u - d], rolled so that d = -(nb - 1) lands at 0
        out = np.fft.irfftn(product, shape, axes=axes)
        out = np.roll(out, tuple(nb - 1 for nb in b.shape), axis=axes)
        return out[tuple(slice(0, na + nb - 1) for na, nb in zip(a.shape, b.shape))]

    fa, fb = spec(a), spec(b)
    ones_a, ones_b = spec(np.ones(a.shape, np.float32)), spec(np.ones(b.shape, np.float32))
    count = np.maximum(np.rint(corr(ones_a * np.conj(ones_b))), 1)
    sum_a, sum_b = corr(fa * np.conj(ones_b)), corr(ones_a * np.conj(fb))
    sq_a = corr(spec(a * a) * np.conj(ones_b))
    sq_b = corr(ones_a * np.conj(spec(b * b)))
    cross = fa * np.conj(fb)
    var = np.maximum(sq_a - sum_a ** 2 / count, 0) * np.maximum(sq_b - sum_b ** 2 / count, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = (corr(cross) - sum_a * sum_b / count) / np.sqrt(var)
    ncc[~(var > 1e-6 * count ** 2)] = np.nan   # flat or (numerically) empty overlaps
    magnitude = np.abs(cross)
    phase = corr(cross / (magnitude + 1e-6 * float(magnitude.max() or 1)))
    return ncc, phase


def _fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT sizes pocketfft handles quickly."""
    best = 1 << (n - 1).bit_length()
    for p3 in (1, 3, 9, 27, 81):
        for p5 in (1, 5, 25, 125):
            m = p3 * p5
            while m < n:
                m *= 2
            best = min(best, m)
    return best


def candidates(surface: np.ndarray, shape_a: Sequence[int], shape_b: Sequence[int],
               window: Window, count: int, by_overlap: bool = False) -> list[Vec]:
    """The `count` best separate peaks of `surface` whose displacement the window allows;
    with `by_overlap`, best by atanh(NCC) * sqrt(shared voxels), the NCC's significance:
    an NCC over a few voxels is noisy, and a thin overlap's chance 0.95 counts for less
    than a wide overlap's 0.88."""
    offset = [nb - 1 for nb in shape_b]
    lo = [max(0, c - r + o) for c, r, o in zip(window.centre, window.radius, offset)]
    hi = [min(n, c + r + o + 1) for c, r, o, n in zip(window.centre, window.radius, offset,
                                                       surface.shape)]
    if any(h <= low for low, h in zip(lo, hi)):
        return []
    part = np.array(surface[tuple(slice(low, h) for low, h in zip(lo, hi))], dtype=np.float64)
    if by_overlap:
        sides = [np.array([_overlap_len(i + low - o, na, nb) for i in range(h - low)], float)
                 for low, h, o, na, nb in zip(lo, hi, offset, shape_a, shape_b)]
        shared_voxels = np.ones(part.shape)
        for side in np.ix_(*sides):      # the outer product of the per-axis overlaps
            shared_voxels = shared_voxels * side
        part = np.arctanh(np.clip(part, -0.999, 0.999)) * np.sqrt(shared_voxels)
    part[~np.isfinite(part)] = -np.inf
    found: list[Vec] = []
    for flat in np.argsort(part, axis=None)[::-1][:50 * count]:
        if len(found) == count or not np.isfinite(part.flat[flat]):
            break
        idx = np.unravel_index(flat, part.shape)
        d = tuple(int(i + low - o) for i, low, o in zip(idx, lo, offset))
        if not window.allows(d, shape_a, shape_b):
            continue
        if any(max(abs(x - y) for x, y in zip(d, f)) <= 2 for f in found):
            continue     # on the flank of a better candidate: the same peak
        found.append(d)
    return found


def climb(a: np.ndarray, b: np.ndarray, start: Vec, window: Window,
          max_steps: int = 64) -> tuple[Vec, float]:
    """Hill-climb the NCC from `start`, one voxel along one axis at a time, in the window."""
    best, score = start, ncc_at(a, b, start)
    seen = {start: score}
    for _ in range(max_steps):
        moved = False
        for axis in range(a.ndim):
            for step in (-1, 1):
                d = tuple(v + (step if k == axis else 0) for k, v in enumerate(best))
                if d in seen or not window.allows(d, a.shape, b.shape):
                    continue
                seen[d] = ncc_at(a, b, d)
                if seen[d] > score:
                    best, score, moved = d, seen[d], True
        if not moved:
            break
    return best, score


def peaks_here(a: np.ndarray, b: np.ndarray, d: Vec, score: float, window: Window) -> bool:
    """Whether the NCC at `d` is a peak, not only the window's best: no neighbour just
    outside the window (past its radius, or sharing fewer than `min_overlap` voxels)
    scores higher. A maximum pressed against the window's edge is a surface still rising
    outwards, most often towards the thinnest overlaps, where a few voxels of background
    correlate by chance (0.92 at an 8-voxel overlap of sparse tiles): not a measurement.
    Inside the window `climb` already left no better neighbour."""
    for axis in range(a.ndim):
        for step in (-1, 1):
            e = tuple(v + (step if k == axis else 0) for k, v in enumerate(d))
            if not window.allows(e, a.shape, b.shape) and ncc_at(a, b, e) > score:
                return False
    return True


def subvoxel(a: np.ndarray, b: np.ndarray, d: Vec) -> tuple[float, ...]:
    """`d` plus, per axis, the vertex of the parabola through the NCC at d-1, d, d+1.

    All three use the same voxels of `a` (the shared part shrunk by one voxel at each
    end), so the three scores differ only by the shift, not by which voxels they cover.
    """
    cut = shared(a.shape, b.shape, d)
    if cut is None:
        return tuple(float(v) for v in d)
    out = []
    for axis, v in enumerate(d):
        part = cut[0][axis]
        if part.stop - part.start < 3:
            out.append(float(v))
            continue
        inner = tuple(slice(s.start + 1, s.stop - 1) if k == axis else s
                      for k, s in enumerate(cut[0]))
        pa = a[inner] - a[inner].mean(dtype=np.float64)
        scores = []
        for step in (-1, 0, 1):
            at = tuple(slice(s.start - dv - (step if k == axis else 0),
                             s.stop - dv - (step if k == axis else 0))
                       for k, (s, dv) in enumerate(zip(inner, d)))
            pb = b[at] - b[at].mean(dtype=np.float64)
            denom = np.sqrt(np.vdot(pa, pa) * np.vdot(pb, pb))
            scores.append(float(np.vdot(pa, pb) / denom) if denom > 0 else 0.0)
        curve = scores[0] - 2 * scores[1] + scores[2]
        shift = 0.5 * (scores[0] - scores[2]) / curve if curve < 0 else 0.0
        out.append(v + float(np.clip(shift, -0.5, 0.5)))
    return tuple(out)


def bin_mean(array: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    """Mean over `factor` blocks (z, y, x), trimming the far edge to whole blocks."""
    if all(f == 1 for f in factor):
        return array.astype(np.float32, copy=False)
    trimmed = array[tuple(slice(0, n - n % f) for n, f in zip(array.shape, factor))]
    shape = [v for n, f in zip(trimmed.shape, factor) for v in (n // f, f)]
    return trimmed.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def smooth(array: np.ndarray, passes: int = 1) -> np.ndarray:
    """Binomial [1, 2, 1] / 4 blur along every axis, `passes` times (edges repeated):
    a cheap gaussian of sigma sqrt(passes / 2) against shot noise."""
    out = array.astype(np.float32)
    for _ in range(passes):
        for axis, n in enumerate(out.shape):
            if n < 3:
                continue
            padded = np.concatenate([np.take(out, [0], axis), out, np.take(out, [n - 1], axis)], axis)
            side = lambda lo: np.take(padded, np.arange(lo, lo + n), axis=axis)  # noqa: B023  (used in this iteration only)
            out = 0.5 * out + 0.25 * (side(0) + side(2))
    return out


def high_pass(array: np.ndarray, passes: int) -> np.ndarray:
    """`array` minus a heavy blur: removes the background and illumination gradients,
    which correlate at any displacement and would flatten the score surface."""
    return array - smooth(array, passes) if passes > 0 else array


def pyramid_factors(factor: Sequence[int]) -> list[tuple[int, ...]]:
    """Binning factors from `factor` down to 1, halving each axis per level."""
    levels = [tuple(int(f) for f in factor)]
    while any(f > 1 for f in levels[-1]):
        levels.append(tuple(-(-f // 2) for f in levels[-1]))
    return levels


def _finite(crop: np.ndarray) -> np.ndarray:
    """`crop` with NaN and ±inf replaced by the mean of its finite values (0 if none): a
    float tile's missing voxels otherwise make every FFT and NCC over them NaN, and the
    pair reads as without a match (trial N: one NaN voxel in an overlap lost the pair)."""
    if crop.dtype.kind != "f":
        return crop
    bad = ~np.isfinite(crop)
    if not bad.any():
        return crop
    kept = crop[~bad]
    fixed = crop.copy()
    fixed[bad] = kept.mean(dtype=np.float64) if kept.size else 0.0
    return fixed


def match(a: np.ndarray, b: np.ndarray, window: Window, factor: Sequence[int],
          count: int = 3, background: int = 16, keep: int = 2) -> Match | None:
    """The displacement of crop `b` in crop `a` (z, y, x) inside `window`, or None.

    The all-displacement search runs on crops binned by `factor`; its best NCC and
    phase-correlation peaks are each followed down a pyramid of halved binning factors by
    hill-climbing, and the best full-resolution NCC wins. `background` is the number of
    binomial passes (at the coarsest level) of the blur subtracted as background.
    """
    fine_a, fine_b = smooth(_finite(a)), smooth(_finite(b))
    levels = pyramid_factors(factor)
    coarse_a = high_pass(bin_mean(fine_a, levels[0]), background)
    coarse_b = high_pass(bin_mean(fine_b, levels[0]), background)
    ncc, phase = correlation_surfaces(coarse_a, coarse_b)
    coarse_window = window.scaled(levels[0])
    starts = set(candidates(ncc, coarse_a.shape, coarse_b.shape, coarse_window, count))
    starts |= set(candidates(phase, coarse_a.shape, coarse_b.shape, coarse_window, count))
    # the best NCCs of the binned crops can all sit at thin overlaps, where a few binned
    # voxels correlate by chance, crowding out the true peak: follow the most significant
    # ones too (a 96 x 96 x 24 pair binned [4, 4, 2] was measured 36 voxels off without)
    starts |= set(candidates(ncc, coarse_a.shape, coarse_b.shape, coarse_window, count,
                             by_overlap=True))
    # follow every start one level down, then only the best few: a wrong start rarely
    # wins at a finer level, and full-resolution scores are the expensive ones
    found = [(d, -1.0) for d in sorted(starts)]
    previous = levels[0]
    for f in levels[1:] or [levels[0]]:
        la, lb = bin_mean(fine_a, f), bin_mean(fine_b, f)
        scaled = window.scaled(f)
        climbed = {}
        for d, _ in found:
            d = tuple(int(v * p // q) for v, p, q in zip(d, previous, f))
            end, score = climb(la, lb, d, scaled)
            if peaks_here(la, lb, end, score, scaled):   # else the edge of the window
                climbed[end] = score
        found = sorted(climbed.items(), key=lambda item: -item[1])[:keep]
        previous = f
    found = [(d, score) for d, score in found if window.allows(d, a.shape, b.shape)]
    if not found:
        return None
    d, score = found[0]
    if score <= -1.0:   # ncc_at's "flat": an empty tile has nothing to measure, no match
        return None
    cut = shared(a.shape, b.shape, d)
    return Match(subvoxel(fine_a, fine_b, d), score,
                 int(np.prod([s.stop - s.start for s in cut[0]])))
