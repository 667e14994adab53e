"""What executors run for the illumination corrections; each returns a small result.

- `tile_statistics`: a group of tiles reduced to per-cell intensity histograms (a sum over
  tiles and slices; the driver adds the groups' arrays and fits the fields).
- `measure_intensity`: one overlapping pair's linear relation between the two tiles'
  co-located (flatfield-corrected) intensities (`measure_intensities`: a group of pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.geometry import Box
from pipelines.illumination.correct import Correction, read_corrected
from pipelines.illumination.estimate import Binning, tile_histogram
from pipelines.tiles import Tile, TileSet, read_region

SLAB_BYTES = 64 * 2**20      # a tile is read this many bytes of slices at a time
MAX_SIDE = 256               # longest side (voxels) of the overlap crop one pair reads
MIN_VOXELS = 512             # fewer shared voxels than this: the pair is not measured
# Quantiles compared between the two tiles' shared voxels (after 2x2x2 binning).
PAIR_PROBABILITIES = np.linspace(0.05, 0.99, 48)


@dataclass(frozen=True)
class StatisticsJob:
    """What every statistics task shares: per timepoint the channel's tiles, the binning."""

    tiles: tuple[TileSet, ...]
    binning: Binning
    s3: object = None


@dataclass(frozen=True)
class TileStatistics:
    counts: np.ndarray   # summed histograms (cells y, x, bins) of the task's tiles
    tiles: int           # how many tiles they hold


def tile_statistics(job: StatisticsJob, item: tuple[int, tuple[int, ...]], attempt: int) -> TileStatistics:
    """Summed histograms of the tiles `item` = (timepoint, indices)."""
    timepoint, indices = item
    by_index = job.tiles[timepoint].by_index()
    total = np.zeros(job.binning.shape, dtype=np.int64)
    for i in indices:
        for slab in _slabs(by_index[i]):
            total += tile_histogram(read_region(by_index[i], slab, job.s3), job.binning)
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
    """One pair's measured relation: b's values ~ slope * a's values + intercept (a
    quantile-quantile line), and the medians of both tiles' shared values."""

    a: int
    b: int
    slope: float
    intercept: float
    voxels: int        # shared voxels compared
    median_a: float
    median_b: float


@dataclass(frozen=True)
class IntensityJob:
    """What every pair task shares: the tiles, the flatfield applied first, S3 access."""

    tiles: TileSet
    correction: Correction
    channel: int = 0
    s3: object = None


def measure_intensity(job: IntensityJob, pair: tuple[int, int], attempt: int) -> PairIntensity | None:
    """Read the two tiles' shared box (corrected by the flatfield) and fit b against a.

    The fit compares quantiles of the co-located voxels (a quantile-quantile line) after
    2x2x2 binning: ordinary least squares of b on a voxel by voxel is biased towards a
    flat line by the noise in a; the quantiles of the same voxels are not, and a residual
    misregistration of a voxel or two barely moves them."""
    index = job.tiles.by_index()
    a, b = index[pair[0]], index[pair[1]]
    shared = _crop(a.box.intersect(b.box))
    if a.transform is not None or b.transform is not None or shared.size < MIN_VOXELS:
        return None
    va = _binned(read_corrected(a, shared.relative_to(a.box.start), job.correction, job.channel, job.s3))
    vb = _binned(read_corrected(b, shared.relative_to(b.box.start), job.correction, job.channel, job.s3))
    qa, qb = np.quantile(va, PAIR_PROBABILITIES), np.quantile(vb, PAIR_PROBABILITIES)
    slope, intercept = np.polyfit(qa, qb, 1)
    return PairIntensity(a.index, b.index, round(float(slope), 6), round(float(intercept), 4),
                         int(shared.size), round(float(np.median(va)), 4),
                         round(float(np.median(vb)), 4))


def measure_intensities(job: IntensityJob, pairs: tuple[tuple[int, int], ...],
                        attempt: int) -> list[PairIntensity | None]:
    """`measure_intensity` for a group of pairs in one task (a pair's work is small
    next to a task's start-up)."""
    return [measure_intensity(job, pair, attempt) for pair in pairs]


def _crop(box: Box) -> Box:
    """At most MAX_SIDE voxels per axis, around the box's centre (bounds a task's memory)."""
    start, stop = [], []
    for a, b in zip(box.start, box.stop):
        lo = a + max(0, (b - a - MAX_SIDE) // 2)
        start.append(lo)
        stop.append(min(b, lo + MAX_SIDE))
    return Box(tuple(start), tuple(stop))


def _binned(values: np.ndarray) -> np.ndarray:
    """Means of 2x2x2 voxels (fewer along an axis of one voxel): less noise to compare."""
    steps = [2 if n > 1 else 1 for n in values.shape]
    trimmed = values[tuple(slice(0, n - n % s) for n, s in zip(values.shape, steps))]
    shape = [v for n, s in zip(trimmed.shape, steps) for v in (n // s, s)]
    return trimmed.reshape(shape).mean(axis=(1, 3, 5)).ravel()
