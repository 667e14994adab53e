"""Per-tile intensity (gain, offset) from the pairs' measured relations (driver side).

Model: after the flatfield, tile i's values are v_i = k_i * I + b, the true intensity I
times the tile's brightness k_i (bleaching, laser drift) plus one offset b shared by all
tiles (what is left of the dark level: the flatfield's T is only known up to a multiple
of S, see `estimate`). The correction g_i * (v_i - b) + b, i.e. gain g_i = 1 / k_i up to a
global scale and offset b * (1 - g_i), makes the tiles agree.

Why not an independent offset per tile: a tile overlap is thin and spans a narrow range
of intensities, so a line fitted per pair has a noisy slope (3 % on the demo's 5-voxel
overlaps) traded against its intercept, while the ratio of the two tiles' median values
is precise (0.5 %) once b is known. So the solve has two steps:
1. b, from every pair's line (`tasks.measure_intensity`: spreads compared with the
   photon noise taken out): b_b - b = s (v_a - b) gives intercept c = b (1 - s); b is the
   weighted least-squares fit of c against (1 - s) over the pairs (pairs of equal
   brightness say nothing about it, pairs that differ pin it down; a pair's weight is its
   voxels times its structure's variance: overlaps of background and noise alone say
   nothing either), of plausible slope where those pin it, and only from lines whose slope
   is clearly off 1 for its noise (`shared_offset`); where no line is, b is 0. A b that
   makes the pairs' medians (step 2) disagree far more than b = 0 does is refused.
2. log g_a - log g_b = log r, r = (median_b - b) / (median_a - b), by weighted least squares
   (weights: voxels compared) with a weak pull of every log g towards 0 (gain 1), which
   fixes the global scale and keeps tiles without usable pairs as they are (gain 1,
   offset 0: `unlinked`; a pair whose tiles do not see their overlap alike is not usable,
   `tasks.measure_intensity`). As our
   stitching solve does, a pair whose residual exceeds `max_residual` is dropped, the
   worst first, and the solve repeated.
The normal equations are solved by conjugate gradients over the sparse rows, so memory
and time grow with the number of pairs, not with the square of the number of tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipelines.illumination.tasks import PairIntensity

METHOD = 2            # bumped when the solve gives other coefficients for the same pairs:
                      # coefficients of an earlier method are matched again (`matched`;
                      # 2: lines within their noise of slope 1 make no offset, and an
                      # offset the medians disagree with by over 5 % is refused)
PULL = 0.01           # weight of the pull of each tile's log gain towards 0
MAX_RESIDUAL = 0.05   # relative disagreement of a pair with the solution: dropped beyond
MAX_RATIO = 4.0       # a brightness ratio of neighbouring tiles at most (`shared_offset`)
MIN_LEVER = 0.01      # lines whose slopes differ from 1 by less (weighted RMS) pin no offset
SIGNIFICANT = 3.0     # a line pins the offset where its slope is this many errors from 1
LOOP_FACTOR = 5.0     # b is refused when its pairs disagree this many times more than b = 0's
                      # (and by over max_residual: `solve_intensities`)


@dataclass(frozen=True)
class IntensitySolution:
    """The per-tile gain and offset that make the tiles' intensities agree, the shared offset
    b, and the pairs used for them and dropped."""

    coefficients: dict[int, tuple[float, float]]   # tile index -> (gain, offset)
    shared_offset: float                            # b
    used: tuple[PairIntensity, ...]
    dropped: tuple[PairIntensity, ...]
    unlinked: tuple[int, ...] = ()                   # tiles in no used pair: kept as they are
    offset_lines: tuple[PairIntensity, ...] = ()     # the pairs whose lines made b
    refused: tuple[float, float, float] | None = None  # the lines' b refused, and the pairs'
                                                       # disagreement with it and with b = 0


def shared_offset(pairs: Sequence[PairIntensity]) -> tuple[float, tuple[PairIntensity, ...]]:
    """b of the module docstring, and the pairs whose lines made it (none: b is 0, as no
    line pins it down). Only lines whose slope is more than SIGNIFICANT standard errors
    from 1 count: where every tile is equally bright, slopes differ from 1 by their noise
    alone, and a line through the pair's means with a slope off by noise crosses the
    diagonal near the means (b 289 for a dark level of 100 on 8 x 8 equal tiles, 111 of
    112 pairs then dropped; 27 % off on 5 x 5 without fields). Of those, the lines of
    plausible slope (within MAX_RATIO either way: the brightness ratio of neighbouring
    tiles) when they pin b, else every one.

    Why: a tile of background alone, whose leftover vignetting passed for structure, gave
    lines of slopes 12-39 or 0.03-0.05 against its neighbours' (trial AC, through estimated
    fields or without any); weighing (1 - s)², they made b, and every gain went wrong (0.45-
    3.13 for true gains within 0.68-0.99). Where a tile truly 5 x dimmer is the only one
    whose brightness differs, its lines are all that pin b, and they are taken (review: a
    bare bound had left b at 0 or 613 for a dark level of 100; a rule on where a line puts
    b against the medians depended on the camera's dark level)."""
    lines = [p for p in pairs if p.signal > 0 and abs(1 - p.slope) > SIGNIFICANT * p.slope_error]
    plausible = [p for p in lines if 1 / MAX_RATIO <= p.slope <= MAX_RATIO]
    for chosen in (plausible, lines):
        b = _fitted_offset(chosen)
        if b is not None:
            return b, tuple(chosen)
    return 0.0, ()


def _fitted_offset(lines: Sequence[PairIntensity]) -> float | None:
    """The weighted least-squares b of these lines; None when their slopes are too close
    to 1 to pin it (weighted RMS of 1 - s below MIN_LEVER)."""
    w = np.array([p.voxels * p.signal for p in lines], dtype=float)
    lever = 1.0 - np.array([p.slope for p in lines])
    spread = float((w * lever * lever).sum())
    if not lines or spread < MIN_LEVER ** 2 * float(w.sum()):
        return None
    return float((w * lever * np.array([p.intercept for p in lines])).sum() / spread)


def solve_intensities(indices: Sequence[int], pairs: Sequence[PairIntensity],
                      pull: float = PULL, max_residual: float = MAX_RESIDUAL) -> IntensitySolution:
    """Per tile (gain, offset), dropping inconsistent pairs (module docstring)."""
    b, lines = shared_offset(pairs)
    if b != 0:
        # the lines' b must not make the brightness ratios disagree around the grid's
        # loops both far more than no offset does and by more than a pair may before it
        # is dropped: a blank tile's vignetting, taken for structure without a flatfield,
        # gave one significant line and a b near the medians (a 5 x 5 grid of equal
        # tiles: RMS 7.3 % against 0.4 % at b = 0, gains 73 % off). Noise favours b = 0
        # (it is magnified by median / (median - b)): lines that fit measured 0.6-2.0 %
        # (1.5-3.3 x b = 0's), and a true b over dim, even overlaps (20 counts above a
        # dark level of 100, medians 3 % apart) 2.7 % against 0.4 % (review: refused at a
        # floor of 2.5 %). Without loops (a row of tiles) every b fits.
        # compared on the same pairs: those usable at b (medians above it, and above 0,
        # which b = 0 needs, for a negative b)
        usable = [p for p in pairs if p.alike and min(p.median_a, p.median_b) > max(b, 0.0)]
        found, plain = _disagreement(indices, usable, b, pull), _disagreement(indices, usable, 0.0, pull)
        if found > max_residual and found > LOOP_FACTOR * plain:
            return replace(_solved(list(indices), pairs, 0.0, (), pull, max_residual),
                           refused=(round(b, 4), round(found, 6), round(plain, 6)))
    return _solved(list(indices), pairs, b, lines, pull, max_residual)


def _disagreement(indices: Sequence[int], usable: list[PairIntensity], b: float,
                  pull: float) -> float:
    """The `usable` pairs' weighted RMS residual (relative) for the shared offset b."""
    if not usable:
        return 0.0
    _, residuals = _solve_logs(list(indices), usable, b, pull)
    voxels = np.array([p.voxels for p in usable], dtype=float)
    return float(np.sqrt((voxels * residuals ** 2).sum() / voxels.sum()))


def _solved(indices: list[int], pairs: Sequence[PairIntensity], b: float,
            lines: tuple[PairIntensity, ...], pull: float, max_residual: float) -> IntensitySolution:
    """The gains for a given shared offset b, dropping the pairs that disagree most."""
    # a pair whose tiles do not see the overlap alike (one blank, or background alone
    # where the other shows structure) relates noise, not brightness
    used = [p for p in pairs if p.alike and p.median_a > b and p.median_b > b]
    dropped = [p for p in pairs if p not in used]
    while True:
        logs, residuals = _solve_logs(indices, used, b, pull)
        if not used or residuals.max() <= max_residual:
            break
        dropped.append(used.pop(int(np.argmax(residuals))))
    coefficients = {i: (round(float(np.exp(x)), 6), round(float(b * (1 - np.exp(x))), 4) + 0.0)  # + 0.0: no -0.0 for gain 1
                    for i, x in zip(indices, logs)}
    linked = {i for p in used for i in (p.a, p.b)}
    return IntensitySolution(coefficients, round(b, 4), tuple(used), tuple(dropped),
                             tuple(i for i in indices if i not in linked), lines)


def _solve_logs(indices: list[int], pairs: list[PairIntensity], b: float, pull: float):
    """Least-squares log gains and every pair's residual (relative)."""
    n, at = len(indices), {i: k for k, i in enumerate(indices)}
    voxels = np.array([p.voxels for p in pairs], dtype=float)
    weights = np.sqrt(voxels / voxels.mean()) if pairs else voxels
    rows, cols, vals, rhs = [], [], [], []
    for r, (p, w) in enumerate(zip(pairs, weights)):   # log g_a - log g_b = log r
        rows += [r, r]
        cols += [at[p.a], at[p.b]]
        vals += [w, -w]
        rhs.append(w * np.log((p.median_b - b) / (p.median_a - b)))
    rows += list(range(len(pairs), len(pairs) + n))
    cols += list(range(n))
    vals += [pull] * n
    rhs += [0.0] * n
    matrix = (np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp), np.array(vals),
              len(pairs) + n)
    x = _least_squares(matrix, np.array(rhs), n)
    fit = _times(matrix, x) - np.array(rhs)
    return x, np.abs(fit[:len(pairs)]) / np.maximum(weights, 1e-12)


def _times(matrix, x: np.ndarray) -> np.ndarray:
    rows, cols, vals, count = matrix
    return np.bincount(rows, vals * x[cols], minlength=count)


def _times_transposed(matrix, y: np.ndarray, size: int) -> np.ndarray:
    rows, cols, vals, _ = matrix
    return np.bincount(cols, vals * y[rows], minlength=size)


def _least_squares(matrix, rhs: np.ndarray, size: int, tolerance: float = 1e-20) -> np.ndarray:
    """Conjugate gradients on the normal equations (positive definite thanks to the
    pull), from 0."""
    x = np.zeros(size)
    r = _times_transposed(matrix, rhs, size)
    p, rr = r.copy(), float(r @ r)
    for _ in range(10 * size + 100):
        if rr <= tolerance:
            break
        q = _times_transposed(matrix, _times(matrix, p), size)
        alpha = rr / float(p @ q)
        x += alpha * p
        r -= alpha * q
        rr, previous = float(r @ r), rr
        p = r + (rr / previous) * p
    return x
