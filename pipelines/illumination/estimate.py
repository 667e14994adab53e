"""Flatfield estimation from per-pixel intensity histograms (pure numpy, no Spark).

The method is the one stitching-spark uses (Saalfeld lab; Gao et al., Science 2019,
"Cortical column and whole-brain imaging with molecular contrast and nanoscale
resolution", supplementary methods), written anew here: a tile's raw pixel value is
raw(x, y) = S(x, y) * I + T(x, y) for the true intensity I, so over many tiles (placed at
random over the sample) the distribution of values seen at one pixel is the pooled
distribution scaled by S and shifted by T. Then every quantile obeys

    quantile_p(k) = S(p) * reference(k) + T(p)

and a straight-line fit per pixel over the quantiles k gives S and T.

To stay small the statistics are kept at reduced resolution: the tile's xy plane is cut
into cells of about `factor` x `factor` pixels (`Binning`); each slice of each tile is
averaged over every cell (which also divides the photon noise by `factor`: noise that
is larger, relative to the signal, where S is small would otherwise widen the dim
pixels' distributions and flatten the estimated S), and each cell keeps a histogram of
those means over all tiles and slices (`tile_histogram`). Histograms add, so executors reduce their
tiles to one array each and the driver sums them (`fit_fields`). The driver smooths the
per-cell S and T, normalises S to mean 1 and interpolates both to the tile's pixel grid.

Per slice (`flatfield.per_slice`): the fields may change with depth (a light sheet
thickens away from its waist). The slices are cut into at most Z_GROUPS groups of
consecutive slices, each keeps its own histograms and is fitted as above; the fields are
stored as one plane per group (S.tif, T.tif of shape groups x y x) and read as the linear
interpolation between the groups' centres (`fields.plane_at`). Each group's S has mean 1:
how bright a depth is overall cannot be told from how the sample gets dimmer with depth.

Identifiability: S and T separate only if the data span a range of intensities. When the
reference's spread (its 99.5 % over its 5 % quantile) is below MIN_SPREAD the offset is not
estimated (T = 0) and `Fields.offset_estimated` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bumped whenever estimation gives other fields for the same tiles; flatfield.json records
# it ("estimation_method"), and fields of another method reused by fusion.flatfield =
# "auto" get a warning (`fields.earlier_estimate`; trial AK: nothing told an earlier
# version's fields from this one's but the offset check's mark).
# 1: 2026-12-07 night; fields of the day before it that record "offset_checked" are alike.
METHOD = 1

CELLS = 32                 # cells per axis of the reduced grid at most
MIN_FACTOR = 2             # pixels per cell side at least (noise / MIN_FACTOR)
BINS = 512                 # histogram bins; log-spaced above 1 for wide types (2.2 % wide)
# Quantiles fitted: the body and the bright tail, where structure lifts values far from
# the background; the tail is what separates the gain S from the offset T.
PROBABILITIES = np.concatenate([np.linspace(0.05, 0.95, 19), [0.97, 0.98, 0.99, 0.995]])
SMOOTHING = 1.5            # gaussian sigma, in cells, applied to S and T before upsampling
REFINE = 2                 # rounds of re-fitting against the corrected consensus
UNIFORM_OFFSET_FIT = 0.5    # share of the cells' offset variance T0 + b * S must explain
MIN_SPREAD = 1.5           # reference q(0.995) / q(0.05) below this: T is not identifiable
Z_GROUPS = 8               # per slice: at most this many groups of slices, fitted apart
# An illumination field darker than this share of its mean anywhere is not one: the tiles'
# histograms followed the sample (too few tiles, or sparse content in the same places),
# and dividing by it would blow up or flip the pixels there (S down to -0.21 seen).
MIN_GAIN = 0.1
# How far T may lie above a cell's darkest values (its 0.1 % quantile), in units of that
# cell's low tail (q(0.05) - q(0.001)). A correct T over a black background (values = T
# plus gaussian noise) lies 2.14 units up; estimates that made 1-10 % of the corrected
# voxels negative on 16 tiles lay 3.0-6.1 up, good ones of 144 tiles below 0.
DARK_MARGIN = 2.5
_TOP = {"uint8": 256.0, "uint16": 65536.0, "int16": 32768.0}  # otherwise FLOAT_TOP
FLOAT_TOP = 2.0 ** 24


@dataclass(frozen=True)
class Binning:
    """How a tile plane (x, y pixels) is reduced: its cells and the intensity bins."""

    size: tuple[int, int]      # tile plane, x, y
    cells: tuple[int, int]     # cells along x, y
    dtype: str                 # the tiles' pixel type (chooses the bins)
    depth: int = 1             # the tiles' slices (per slice only)
    groups: int = 1            # groups of slices fitted apart (1: one field for all)

    @classmethod
    def for_tiles(cls, size_xy, dtype, depth: int = 0) -> Binning:
        """At most CELLS cells per axis, each at least MIN_FACTOR pixels wide; with
        `depth` (per slice) at most Z_GROUPS groups of slices."""
        size = (int(size_xy[0]), int(size_xy[1]))
        cells = tuple(max(1, min(CELLS, n // MIN_FACTOR)) for n in size)
        depth = max(1, int(depth))
        return cls(size, (cells[0], cells[1]), np.dtype(dtype).name, depth, min(depth, Z_GROUPS))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a histogram array: (groups of slices,) cells y, cells x, bins."""
        plane = (self.cells[1], self.cells[0], BINS)
        return plane if self.groups == 1 else (self.groups, *plane)

    def group_of(self, z: int) -> int:
        """The group of slice z (equal runs of consecutive slices)."""
        return min(self.groups - 1, z * self.groups // self.depth)

    def edges(self) -> np.ndarray:
        """BINS + 1 bin edges: unit bins for 8-bit tiles, else 0, then log-spaced from 1."""
        if self.dtype == "uint8":
            return np.arange(BINS + 1, dtype=np.float64) * (256.0 / BINS)
        top = _TOP.get(self.dtype, FLOAT_TOP)
        return np.concatenate([[0.0], np.geomspace(1.0, top, BINS)])

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """The bin index of every value (values outside the edges go to the end bins)."""
        edges = self.edges()
        index = np.searchsorted(edges, values.astype(np.float64, copy=False), side="right") - 1
        return np.clip(index, 0, BINS - 1)

    def cell_of(self) -> np.ndarray:
        """Per pixel (y, x) of the plane, the flat index of its cell."""
        (nx, ny), (cx, cy) = self.size, self.cells
        row, col = (np.arange(ny) * cy) // ny, (np.arange(nx) * cx) // nx
        return row[:, None] * cx + col[None, :]


def tile_histogram(stack: np.ndarray, binning: Binning, first_slice: int = 0) -> np.ndarray:
    """Counts (`binning.shape`, int64) of one tile's cell means (`stack` z, y, x, whose
    first plane is the tile's slice `first_slice`): one value per cell and slice."""
    cell = binning.cell_of().ravel()
    cells = binning.cells[0] * binning.cells[1]
    pixels = np.bincount(cell, minlength=cells).astype(np.float64)
    counts = np.zeros(int(np.prod(binning.shape)), dtype=np.int64)
    for z, plane in enumerate(stack, first_slice):   # a slice at a time: temporaries of a plane
        at = binning.group_of(z) * cells * BINS
        finite = np.isfinite(plane) if plane.dtype.kind == "f" else None
        if finite is None or finite.all():
            means = np.bincount(cell, weights=plane.ravel(), minlength=cells) / pixels
            counts[at + np.arange(cells) * BINS + binning.bin_of(means)] += 1
            continue
        # trial O: a NaN voxel (missing data) made its cell's mean NaN, counted in the top
        # bin, and the fields came out "not usable"; cell means of the finite pixels only
        seen = np.bincount(cell, weights=finite.ravel(), minlength=cells)
        sums = np.bincount(cell, weights=np.where(finite, plane, 0).ravel(), minlength=cells)
        some = seen > 0
        means = sums[some] / seen[some]
        counts[at + np.flatnonzero(some) * BINS + binning.bin_of(means)] += 1
    return counts.reshape(binning.shape)


@dataclass(frozen=True)
class Fields:
    """A channel's flatfield: corrected = (raw - offset) / gain, both (y, x) float32, or
    (groups, y, x) per slice (one plane per group of slices, see the module docstring)."""

    gain: np.ndarray           # S, mean 1
    offset: np.ndarray         # T, in raw units
    offset_estimated: bool = True
    spread: float = 0.0        # the reference's q(0.995) / q(0.05)


def implausible(fields: Fields) -> str:
    """Why `fields` cannot be an illumination field ('' when it can): S at or below
    MIN_GAIN of its mean somewhere."""
    return implausible_gain(fields.gain)


def implausible_gain(gain: np.ndarray) -> str:
    """Why `gain` cannot be an illumination field's S ('' when it can): a value that is
    not finite, or one at or below MIN_GAIN of its mean. Estimated and supplied fields
    are held to the same check (the correction divides by S)."""
    if not np.isfinite(gain).all():
        return not_finite(gain)
    mean = float(gain.mean())
    if mean <= 0:
        return f"its mean is {mean:.4g} (an illumination field is positive)"
    low = gain <= MIN_GAIN * mean
    if not low.any():
        return ""
    # a count, not a percentage: one pixel in many rounds to 0.0 % and reads as none
    return (f"its S falls to {float(gain.min()) / mean:.3f} of the mean at {int(low.sum())} of "
            f"its {low.size} pixels (an illumination field stays above {MIN_GAIN} of its mean)")


def not_finite(values: np.ndarray) -> str:
    """'N of its M values are not finite' (N > 0), for a field that holds NaN or inf."""
    bad = int((~np.isfinite(values)).sum())
    return f"{bad} of its {values.size} values {'is' if bad == 1 else 'are'} not finite"


def impossible_offset(counts: np.ndarray, binning: Binning, fields: Fields) -> str:
    """Why the fields' T cannot be the tiles' offset ('' when it can): raw = S I + T with
    I >= 0, so T lies below a pixel's darkest values but for their noise; a T above them
    by more (DARK_MARGIN) would correct those values below 0, where they are clipped."""
    if not fields.offset_estimated:
        return ""
    plane = fields.offset if fields.offset.ndim == 2 else fields.offset[0]   # shared by groups
    cell, n = binning.cell_of().ravel(), binning.cells[0] * binning.cells[1]
    offset = np.bincount(cell, plane.ravel().astype(np.float64), n) / np.bincount(cell, minlength=n)
    sums = (counts if counts.ndim == 3 else counts.sum(axis=0)).reshape(n, BINS)
    darkest, low = quantiles(sums, binning.edges(), np.array([0.001, 0.05])).T
    if ((offset - darkest) <= DARK_MARGIN * (low - darkest)).all():
        return ""
    cdf = np.cumsum(sums, axis=-1) / np.maximum(sums.sum(axis=-1, keepdims=True), 1)
    below = max(float(np.interp(t, binning.edges()[1:], c)) for t, c in zip(offset, cdf))
    return (f"its offset T ({offset.max():.1f}) lies above the darkest values the tiles show "
            f"(down to {darkest.min():.0f}) by more than their noise: corrected, up to {below:.0%} "
            f"of a pixel's values would fall below 0")


def quantiles(counts: np.ndarray, edges: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Quantiles (..., len(probabilities)) of histograms (..., bins), linear within a bin."""
    cdf = np.cumsum(counts, axis=-1, dtype=np.float64)
    total = np.maximum(cdf[..., -1:], 1.0)
    cdf /= total
    out = np.empty(counts.shape[:-1] + (len(probabilities),))
    for n, p in enumerate(probabilities):
        k = np.minimum((cdf < p).sum(axis=-1), counts.shape[-1] - 1)   # first bin reaching p
        below = np.where(k > 0, np.take_along_axis(cdf, np.maximum(k - 1, 0)[..., None], -1)[..., 0], 0.0)
        here = np.take_along_axis(cdf, k[..., None], -1)[..., 0] - below
        frac = np.clip((p - below) / np.where(here > 0, here, 1.0), 0.0, 1.0)
        out[..., n] = edges[k] + frac * (edges[k + 1] - edges[k])
    return out


def fit_fields(counts: np.ndarray, binning: Binning) -> Fields:
    """S and T over the tile's pixel grid from the summed histograms of every tile (per
    group of slices when the binning has groups)."""
    if binning.groups == 1:
        return _to_pixels(*_fit_cells(counts, binning), binning)
    gain, offset, identified, spread = _fit_cells(counts.sum(axis=0), binning)
    # A camera's offset does not change with depth, and a group alone holds too few values
    # to separate S from T (on the test's tiles each group's T came out 30-70 % high):
    # every group fits only its S, against the offset of all slices.
    fixed = offset if offset is not None else np.zeros_like(gain)
    planes = [_to_pixels(_gain_given_offset(quantiles(group, binning.edges(), PROBABILITIES), fixed, gain),
                         offset, identified, spread, binning) for group in counts]
    return Fields(np.stack([f.gain for f in planes]), np.stack([f.offset for f in planes]),
                  identified, planes[0].spread)


def _fit_cells(counts: np.ndarray, binning: Binning) -> tuple[np.ndarray, np.ndarray | None, bool, float]:
    """Per cell S and T (None when not identified), whether T was, and the spread."""
    local = quantiles(counts, binning.edges(), PROBABILITIES)   # cells y, x, p
    gain = _ratio(local)
    # the pooled values mix every S; the cells' values divided by a first S do not
    reference = np.median(local / gain[..., None], axis=(0, 1))
    spread = float(reference[-1] / max(reference[0], 1e-9))
    identified = spread >= MIN_SPREAD
    offset = None
    for _ in range(REFINE + 1 if identified else 0):
        gain, offset = _line_fit(local, reference)
        reference = np.median((local - offset[..., None]) / gain[..., None], axis=(0, 1))
    if identified:
        gain, offset, reference = _uniform_offset(local, reference, gain, offset)
    return gain, offset, identified, spread


def _to_pixels(gain, offset, identified: bool, spread: float, binning: Binning) -> Fields:
    """Cell fields smoothed, S normalised to mean 1, both interpolated to the pixels."""
    gain, offset = smooth(gain, SMOOTHING), smooth(offset, SMOOTHING) if offset is not None else None
    full_gain = upsample(gain, binning.size)
    full_gain /= np.float32(full_gain.mean(dtype=np.float64))
    full_offset = upsample(offset, binning.size) if offset is not None else np.zeros_like(full_gain)
    return Fields(full_gain, full_offset, identified, round(spread, 4))


def _gain_given_offset(local: np.ndarray, offset: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Per cell S with T given, refitted as the consensus improves (from the first guess
    `gain`)."""
    for _ in range(REFINE + 1):
        reference = np.median((local - offset[..., None]) / gain[..., None], axis=(0, 1))
        gain = _slope_through_origin(local, offset, reference)
    return gain


def _slope_through_origin(local: np.ndarray, offset: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per cell S with T given: the body quantiles less T against `reference`, by least
    squares through the origin."""
    w = (PROBABILITIES <= 0.95).astype(np.float64)
    return ((local - offset[..., None]) * (w * reference)).sum(-1) / float((w * reference * reference).sum())


def _uniform_offset(local, reference, gain, offset):
    """When the cells' offsets are one dark level plus the gauge (T = T0 + b * S: the
    reference is only known up to an added b), take T = T0 everywhere and fit S again
    with T fixed: one offset instead of one per cell halves the error of S on the
    phantom and finds the camera's dark level. Otherwise the per-cell fit stands."""
    b, t0 = np.polyfit(gain.ravel(), offset.ravel(), 1)
    explained = 1 - np.var(offset - (t0 + b * gain)) / max(float(np.var(offset)), 1e-12)
    if explained < UNIFORM_OFFSET_FIT:
        return gain, offset, reference
    reference = reference + b
    flat = np.full_like(offset, t0)
    return _slope_through_origin(local, flat, reference), flat, reference


def _line_fit(local: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the slope and intercept of its quantiles against the reference, by
    weighted least squares: a quantile's weight is 1 / (its scatter about the fit over the
    cells)^2, so the bright tail, which only a few tiles' structure makes at any one cell,
    counts as much as its scatter allows (two rounds; the first uses the body only)."""
    weights = (PROBABILITIES <= 0.95).astype(np.float64)
    for _ in range(2):
        slope, intercept = _weighted_line(local, reference, weights)
        residual = local - (slope[..., None] * reference + intercept[..., None])
        scatter = 1.4826 * np.median(np.abs(residual), axis=(0, 1))
        weights = 1.0 / np.maximum(scatter, 1e-3 * float(reference.mean())) ** 2
    return _weighted_line(local, reference, weights)


def _weighted_line(local: np.ndarray, reference: np.ndarray,
                   weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = weights / weights.sum()
    mean = float((w * reference).sum())
    r = reference - mean
    slope = (local * (w * r)).sum(axis=-1) / max(float((w * r * r).sum()), 1e-12)
    return slope, (local * w).sum(axis=-1) - slope * mean


def _ratio(local: np.ndarray) -> np.ndarray:
    """Per cell, the gain when there is no offset: its mean quantile over the cells' mean."""
    means = local.mean(axis=-1)
    return means / max(float(means.mean()), 1e-12)


def smooth(grid: np.ndarray, sigma: float) -> np.ndarray:
    """A separable gaussian blur of a 2D grid (`sigma` in cells). Beyond the borders the
    grid is continued by point reflection (2 * edge - mirror image), which keeps a linear
    trend, so the borders of a vignetting field are neither raised nor flattened."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.asarray(grid, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = (np.pad(out, pad, mode="reflect", reflect_type="odd") if out.shape[axis] > radius
                  else np.pad(out, pad, mode="edge"))
        out = np.apply_along_axis(np.convolve, axis, padded, taps, mode="valid")
    return out


def upsample(grid: np.ndarray, size_xy) -> np.ndarray:
    """Cell values (cells y, x; each at its cell's centre) interpolated bilinearly to the
    pixel grid (y, x), extrapolated linearly beyond the outer cell centres; float32."""
    rows = _axis_weights(grid.shape[0], int(size_xy[1]))
    cols = _axis_weights(grid.shape[1], int(size_xy[0]))
    return (rows @ grid @ cols.T).astype(np.float32)


def _axis_weights(cells: int, pixels: int) -> np.ndarray:
    """(pixels, cells) linear interpolation matrix from cell centres to pixel centres."""
    weights = np.zeros((pixels, cells))
    if cells == 1:
        weights[:, 0] = 1.0
        return weights
    u = (np.arange(pixels) + 0.5) * cells / pixels - 0.5
    k = np.clip(np.floor(u).astype(int), 0, cells - 2)
    t = u - k
    weights[np.arange(pixels), k] = 1 - t
    weights[np.arange(pixels), k + 1] = t
    return weights
