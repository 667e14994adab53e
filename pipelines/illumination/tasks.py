"""What executors run for the illumination corrections; each returns a small result.

- `tile_statistics`: a group of tiles reduced to per-cell intensity histograms (a sum over
  tiles and slices; the driver adds the groups' arrays and fits the fields).
- `measure_intensity`: one overlapping pair's linear relation between the two tiles'
  (flatfield-corrected) intensities in their shared box (`measure_intensities`: a group of pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipelines.geometry import Box, to_zyx
from pipelines.illumination.correct import Correction, read_corrected, tile_reader
from pipelines.illumination.estimate import Binning, tile_histogram
from pipelines.pixels.resample import sample_affine
from pipelines.tiles import Tile, TileSet, read_region
from pipelines.transforms import sample_reach

SLAB_BYTES = 64 * 2**20      # a tile is read this many bytes of slices at a time
MAX_SIDE = 256               # longest side (voxels) of the overlap crop one pair reads
MIN_VOXELS = 512             # fewer shared voxels than this: the pair is not measured
# A tile's structure in an overlap, in chance scatters of its noise alone: clearly there
# from PRESENT up, not told from noise below ABSENT (measured: 22-45 for tiles of the
# phantom, 0.3-1.7 for a tile of background alone; the two tiles of one overlap of a
# sparse sample differed by at most 3.6 against 1.2, 10.6 against 8.3)
PRESENT, ABSENT = 6.0, 3.0


@dataclass(frozen=True)
class StatisticsJob:
    """What every statistics task shares: per timepoint the channel's tiles, the binning."""

    tiles: tuple[TileSet, ...]
    binning: Binning
    s3: object = None


@dataclass(frozen=True)
class TileStatistics:
    """What one flatfield statistics task returns: its tiles' histograms, summed, for the
    driver to add up."""

    counts: np.ndarray   # summed histograms (cells y, x, bins) of the task's tiles
    tiles: int           # how many tiles they hold


def tile_statistics(job: StatisticsJob, item: tuple[int, tuple[int, ...]], attempt: int) -> TileStatistics:
    """Summed histograms of the tiles `item` = (timepoint, indices)."""
    timepoint, indices = item
    by_index = job.tiles[timepoint].by_index()
    total = np.zeros(job.binning.shape, dtype=np.int64)
    for i in indices:
        for slab in _slabs(by_index[i]):
            total += tile_histogram(read_region(by_index[i], slab, job.s3), job.binning,
                                    slab.start[2])
    return TileStatistics(total, len(indices))


def tiles_reduced(result: TileStatistics) -> int:
    """Tiles a statistics task reduced (the progress line counts tiles)."""
    return result.tiles


def _slabs(tile: Tile) -> list[Box]:
    x, y, z = tile.size
    depth = max(1, SLAB_BYTES // max(1, x * y * tile.dtype.itemsize))
    return [Box((0, 0, z0), (x, y, min(z, z0 + depth))) for z0 in range(0, z, depth)]


@dataclass(frozen=True)
class PairIntensity:
    """One pair's measured relation: b's values ~ slope * a's values + intercept, the
    medians of both tiles' shared values, and how much structure (not noise) the shared
    values hold, which decides how much the line can say (`signal`)."""

    a: int
    b: int
    slope: float
    intercept: float
    voxels: int        # shared voxels compared
    median_a: float
    median_b: float
    signal: float      # variance of the shared values without their noise, a's units
    alike: bool = True  # both tiles show the overlap alike (`_alike`); False: not used
    slope_error: float = 0.0  # the slope's standard error from the noise (`_slope_error`)
                              # (a spread > 0 is at least one scatter: never 1 / 0)


@dataclass(frozen=True)
class IntensityJob:
    """What every pair task shares: the tiles, the flatfield applied first, S3 access."""

    tiles: TileSet
    correction: Correction
    channel: int = 0
    s3: object = None


def measure_intensity(job: IntensityJob, pair: tuple[int, int], attempt: int) -> PairIntensity | None:
    """Read the two tiles' shared box (corrected by the flatfield) and relate b to a.

    The medians of both tiles' shared values give their brightness ratio. The line
    b = slope * a + intercept, which the shared offset is found from, compares the two
    tiles' spreads with the photon noise taken out: a quantile-quantile line (or a fit
    voxel by voxel) takes the noise for structure, and noise grows as the square root of
    the brightness, not in proportion, so where the overlaps' values spread mostly by
    noise (a flat background) its slope is the square root of the brightness ratio and
    the offset found from it is far off (-42 where it was 0 on the flat-background
    phantom). The values are binned 2x2x2; each bin's voxels are split into two
    interleaved halves whose noise is independent and whose structure is nearly the same,
    so the covariance of the halves' means is the variance of the structure alone. The
    slope is the ratio of the two tiles' structure spreads (second moments compared, not
    voxels paired: a residual misregistration of a voxel or two barely moves them).

    A tile placed by an affine is sampled over the shared box of stage voxels (trilinear,
    through its corrections, as fusion samples it), and only the bins every voxel of
    which both tiles cover are compared; a voxel that is not finite (NaN, ±inf: missing
    data) counts as not covered."""
    index = job.tiles.by_index()
    a, b = index[pair[0]], index[pair[1]]
    # boxes as trilinear sampling reaches the tiles, whatever the export's interpolation
    # (review of cd770b4: nearest's larger boxes moved the bins, gains 0.97-1.03 → 0.88-1.13)
    trilinear = sample_reach("linear")
    shared = _crop(replace(a, reach=trilinear).box.intersect(replace(b, reach=trilinear).box))
    if shared.size < MIN_VOXELS:
        return None
    (data_a, inside_a), (data_b, inside_b) = (_values_over(job, t, shared) for t in (a, b))
    both = inside_a if inside_b is None else inside_b if inside_a is None else inside_a & inside_b
    finite = np.isfinite(data_a) & np.isfinite(data_b)
    if not finite.all():   # trial O: NaN voxels (missing data) made every statistic NaN
        both = finite if both is None else both & finite
    covered = int(both.sum()) if both is not None else shared.size
    if covered < MIN_VOXELS:
        return None
    va, vb = _binned(data_a, both), _binned(data_b, both)
    if va.shape[1] < 2:
        return None
    spread_a, spread_b = _structure(va), _structure(vb)
    scatters_a, scatters_b = _scatters(va, spread_a), _scatters(vb, spread_b)
    alike = _alike(va, scatters_a, vb, scatters_b)
    if spread_a > 0 and spread_b > 0 and alike:
        slope = float(np.sqrt(spread_b / spread_a))
        intercept = float(vb[0].mean() - slope * va[0].mean())
        signal = min(spread_a, spread_b / slope ** 2)
        error = _slope_error(slope, scatters_a, scatters_b)
    else:   # no structure above the noise: the pair says nothing about the offset
        slope, intercept, signal, error = 1.0, 0.0, 0.0, 0.0
    return PairIntensity(a.index, b.index, round(slope, 6), round(intercept, 4),
                         covered, round(float(np.median(va[0])), 4),
                         round(float(np.median(vb[0])), 4), round(float(signal), 6), alike,
                         round(error, 6))


def _values_over(job: IntensityJob, tile: Tile, box: Box) -> tuple[np.ndarray, np.ndarray | None]:
    """A tile's corrected values over `box` (stage voxels; z, y, x float32) and where it
    covers them (None: everywhere)."""
    if tile.transform is None:
        return read_corrected(tile, box.relative_to(tile.box.start), job.correction, job.channel, job.s3), None
    found = sample_affine(tile, box, (0, 0, 0), tile_reader(job.correction, job.channel, job.s3), "linear")
    if found is None:
        return np.zeros(to_zyx(box.shape), np.float32), np.zeros(to_zyx(box.shape), bool)
    return found.data, found.inside


def measure_intensities(job: IntensityJob, pairs: tuple[tuple[int, int], ...],
                        attempt: int) -> list[PairIntensity | None]:
    """`measure_intensity` for a group of pairs in one task (a pair's work is small
    next to a task's start-up)."""
    return [measure_intensity(job, pair, attempt) for pair in pairs]


def pairs_measured(results: list[PairIntensity | None]) -> int:
    """The pairs one `measure_intensities` task measured (its progress units)."""
    return len(results)


def _crop(box: Box) -> Box:
    """At most MAX_SIDE voxels per axis, around the box's centre (bounds a task's memory)."""
    start, stop = [], []
    for a, b in zip(box.start, box.stop):
        lo = a + max(0, (b - a - MAX_SIDE) // 2)
        start.append(lo)
        stop.append(min(b, lo + MAX_SIDE))
    return Box(tuple(start), tuple(stop))


def _binned(values: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """(3, bins): per bin of 2x2x2 voxels (fewer along an axis of one voxel) the mean of
    all its voxels, and of its two interleaved halves (voxels whose coordinates add up to
    an even, an odd number), all as flat arrays; only bins all of whose voxels are
    `inside` (when given) are kept."""
    steps = [2 if n > 1 else 1 for n in values.shape]
    bins = _bins(values, steps)
    if inside is not None:
        bins = bins[_bins(inside, steps).all(axis=1)]
    odd = (np.indices(steps).sum(axis=0) % 2).ravel().astype(bool)
    if not odd.any():   # a single voxel per bin: no halves
        return np.stack([bins[:, 0]] * 3)
    return np.stack([bins.mean(axis=1), bins[:, ~odd].mean(axis=1), bins[:, odd].mean(axis=1)])


def _bins(values: np.ndarray, steps: list[int]) -> np.ndarray:
    """(bins, voxels per bin) of a z, y, x array cut into bins of `steps` voxels."""
    trimmed = values[tuple(slice(0, n - n % s) for n, s in zip(values.shape, steps))]
    shape = [v for n, s in zip(trimmed.shape, steps) for v in (n // s, s)]
    return trimmed.reshape(shape).transpose(0, 2, 4, 1, 3, 5).reshape(-1, int(np.prod(steps)))


def _alike(va: np.ndarray, za: float, vb: np.ndarray, zb: float) -> bool:
    """Whether two tiles can be seeing the same sample in their overlap: neither is
    constant (a blank or saturated tile carries no photon noise, so no image), and not
    one shows clear structure where the other holds noise alone (a tile of background
    only). Such a pair relates noise, not brightness: one blank tile had got gain 357
    and scaled every other tile to 0.39 of its brightness. Both without structure is
    alike (a sample's even background: its median ratio is the brightness ratio). `za`,
    `zb`: each tile's structure in chance scatters (`_scatters`)."""
    if va[0].var() == 0 or vb[0].var() == 0:
        return False
    return not (max(za, zb) >= PRESENT and min(za, zb) < ABSENT)


def _scatters(binned: np.ndarray, spread: float) -> float:
    """`spread` in chance scatters: the covariance of two independent noises over n bins
    scatters by sqrt(var even * var odd / n)."""
    _, even, odd = binned
    scatter = float(np.sqrt(even.var() * odd.var() / even.size))
    return spread / scatter if scatter > 0 else 0.0


def _slope_error(slope: float, scatters_a: float, scatters_b: float) -> float:
    """The standard error of slope = sqrt(spread_b / spread_a) from the noise: each spread
    is known to one chance scatter (`_scatters` counts it in those), and the square root
    halves the relative errors, which add in quadrature (the two tiles' noises are
    independent). Slopes of tiles equally bright differ from 1 by about this much (a 5 x 5
    grid: median |1 - s| 0.03 against an error of 0.06), and lines no further from 1 than
    a few errors fitted the shared offset to noise (b 215-289 for a dark level of 100)."""
    return 0.5 * slope * float(np.hypot(1 / scatters_a, 1 / scatters_b))


def _structure(binned: np.ndarray) -> float:
    """The variance of the bins' means without their noise: the covariance of the two
    halves (their noise is independent); 0 where only noise is left."""
    _, even, odd = binned
    return max(0.0, float(np.mean((even - even.mean()) * (odd - odd.mean()))))
