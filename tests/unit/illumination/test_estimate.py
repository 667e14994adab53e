"""Flatfield estimation against the known vignetting field and dark offset of tiles
rendered from the phantom (pipelines.illumination.estimate; no Spark, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.geometry import Box
from pipelines.illumination.estimate import (
    BINS,
    Binning,
    fit_fields,
    quantiles,
    tile_histogram,
    upsample,
)
from pipelines.testing.synthetic import phantom

FALLOFF, DARK = 0.4, 100.0


def true_field(nx: int, ny: int) -> np.ndarray:
    """The vignetting the tiles are made with, written out here: 1 at the centre,
    1 - FALLOFF at the corners, quadratic in between; normalised to mean 1."""
    u, v = np.linspace(0, 1, nx), np.linspace(0, 1, ny)
    field = 1 - FALLOFF * ((2 * v[:, None] - 1) ** 2 + (2 * u[None, :] - 1) ** 2) / 2
    return field / field.mean()


def render_tiles(grid: int, size: tuple[int, int, int], gains: bool = True, seed: int = 3):
    """Noisy uint16 tiles of the phantom on a grid (10 % overlap), each under the field,
    a gain in [0.6, 1.0] and the dark offset."""
    rng = np.random.default_rng(seed)
    step = [int(n * 0.9) for n in size]
    volume = (grid * step[0] + size[0], grid * step[1] + size[1], size[2])
    light = true_field(size[0], size[1]) * (1 - FALLOFF / 3)   # any scale: S is up to one
    for i in range(grid):
        for j in range(grid):
            clean = phantom(Box.from_shape((i * step[0], j * step[1], 0), size), seed, volume, 3.0)
            gain = rng.uniform(0.6, 1.0) if gains else 1.0
            counts = rng.poisson(np.maximum(clean * light * gain, 0)) + DARK
            yield np.clip(counts, 0, 65535).astype(np.uint16)


def estimate(grid: int, size: tuple[int, int, int], gains: bool = True):
    binning = Binning.for_tiles(size[:2], "uint16")
    counts = sum((tile_histogram(t, binning) for t in render_tiles(grid, size, gains)),
                 np.zeros(binning.shape, np.int64))
    return fit_fields(counts, binning)


def relative_rms_up_to_scale(estimated: np.ndarray, truth: np.ndarray) -> float:
    scale = float((estimated * truth).sum() / (estimated * estimated).sum())
    return float(np.sqrt(np.mean((scale * estimated - truth) ** 2) / np.mean(truth ** 2)))


@pytest.fixture(scope="module")
def fields():
    return estimate(10, (48, 48, 8))


def test_gain_field_matches_the_vignetting(fields):
    truth = true_field(48, 48)
    before = relative_rms_up_to_scale(np.ones_like(truth), truth)   # no correction at all
    after = relative_rms_up_to_scale(fields.gain, truth)
    assert fields.gain.shape == (48, 48) and abs(float(fields.gain.mean()) - 1) < 1e-5
    assert after < 0.03 and after < before / 3   # measured: 0.013 and 0.102


def test_offset_is_the_dark_level_up_to_the_gauge(fields):
    """raw = S I + T = S (I + b) + (T - b S): T is known up to b * S (a global offset of
    the corrected values, which fusion cannot see). Fit b; what is left must be small."""
    truth = true_field(48, 48)
    assert fields.offset_estimated and fields.spread > 1.5
    b = float(((DARK - fields.offset) * truth).sum() / (truth * truth).sum())
    left = fields.offset - (DARK - b * truth)
    assert float(np.sqrt(np.mean(left ** 2))) < 0.1 * DARK
    # the cells' offsets are one dark level plus the gauge: T is that level (measured 105)
    assert np.ptp(fields.offset) == 0 and abs(float(fields.offset.mean()) - DARK) < 0.1 * DARK


def test_flat_data_does_not_estimate_an_offset():
    """Tiles of one intensity cannot separate S from T: T stays 0 and S is still found."""
    rng = np.random.default_rng(0)
    binning = Binning.for_tiles((32, 32), "uint16")
    truth = true_field(32, 32)
    counts = sum((tile_histogram(rng.poisson(800 * truth, (4, 32, 32)).astype(np.uint16), binning)
                  for _ in range(20)), np.zeros(binning.shape, np.int64))
    fields = fit_fields(counts, binning)
    assert not fields.offset_estimated and not fields.offset.any()
    assert relative_rms_up_to_scale(fields.gain, truth) < 0.02


def test_histograms_of_parts_add_up_to_the_whole():
    """Executors reduce tile groups separately; the driver's sum must equal one pass, and
    each cell must count its pixel means as np.histogram does."""
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 4000, (6, 20, 24)).astype(np.uint16)
    binning = Binning.for_tiles((24, 20), "uint16")
    whole = tile_histogram(stack, binning)
    assert np.array_equal(whole, tile_histogram(stack[:2], binning) + tile_histogram(stack[2:], binning))
    cy, cx = binning.cells[1], binning.cells[0]
    means = stack.reshape(6, cy, 20 // cy, cx, 24 // cx).mean(axis=(2, 4))
    expected = np.histogram(means[:, 3, 5], bins=binning.edges())[0]
    assert whole.shape == (cy, cx, BINS) and np.array_equal(whole[3, 5], expected)


def test_quantiles_of_a_histogram_match_numpy():
    values = np.random.default_rng(2).gamma(4.0, 60.0, 200_000)
    binning = Binning.for_tiles((2, 2), "uint16")
    counts = np.histogram(values, bins=binning.edges())[0]
    p = np.array([0.1, 0.5, 0.9, 0.99])
    found = quantiles(counts, binning.edges(), p)
    assert np.allclose(found, np.quantile(values, p), rtol=0.01)


def test_upsampling_reproduces_a_linear_field():
    """Cell values of a plane, placed at the cells' centres, come back exactly at every pixel."""
    cells_y, cells_x, ny, nx = 5, 8, 40, 64
    cy = (np.arange(cells_y) + 0.5) * ny / cells_y - 0.5
    cx = (np.arange(cells_x) + 0.5) * nx / cells_x - 0.5
    grid = 2 + 0.01 * cy[:, None] - 0.02 * cx[None, :]
    out = upsample(grid, (nx, ny))
    y, x = np.mgrid[0:ny, 0:nx]
    assert np.allclose(out, 2 + 0.01 * y - 0.02 * x, atol=1e-5)


def test_fields_per_slice_follow_a_vignetting_that_changes_with_depth():
    """Tiles whose fall-off grows from 20 % in the first slice to 50 % in the last (a light
    sheet thickening away from its waist): per slice, every slice's plane (interpolated
    between the groups of slices) is within 3.5 % of that slice's true field; one field
    for all slices is 1.5 x further off at both ends (measured 4.3 and 4.8 %, against 1.2
    and 1.5 % per slice). The histograms are made in two slabs (slices 0-4, 5-15), as
    executors read them."""
    from pipelines.illumination.fields import plane_at
    size, depth, grid = (48, 48), 16, 10
    falloff = np.linspace(0.2, 0.5, depth)
    u = np.linspace(0, 1, size[0])
    radius = ((2 * u[:, None] - 1) ** 2 + (2 * u[None, :] - 1) ** 2) / 2
    fields = 1 - falloff[:, None, None] * radius                  # z, y, x
    rng = np.random.default_rng(4)
    step = int(size[0] * 0.9)
    volume = (grid * step + size[0], grid * step + size[1], depth)
    per_slice, flat = (Binning.for_tiles(size, "uint16", depth), Binning.for_tiles(size, "uint16"))
    assert per_slice.groups == 8 and per_slice.shape == (8, 24, 24, BINS)
    counts = [np.zeros(b.shape, np.int64) for b in (per_slice, flat)]
    for i in range(grid):
        for j in range(grid):
            clean = phantom(Box.from_shape((i * step, j * step, 0), (*size, depth)), 3, volume, 3.0)
            tile = np.clip(rng.poisson(np.maximum(clean * fields * rng.uniform(0.6, 1.0), 0)) + DARK,
                           0, 65535).astype(np.uint16)
            counts[0] += tile_histogram(tile[:5], per_slice) + tile_histogram(tile[5:], per_slice, 5)
            counts[1] += tile_histogram(tile, flat)
    found, one = fit_fields(counts[0], per_slice), fit_fields(counts[1], flat)
    assert found.gain.shape == found.offset.shape == (8, 48, 48)
    errors = [relative_rms_up_to_scale(plane_at(found.gain, z, depth), fields[z]) for z in range(depth)]
    assert max(errors) < 0.035, np.round(errors, 3)   # measured 0.011-0.025
    ends = [relative_rms_up_to_scale(one.gain, fields[z]) for z in (0, depth - 1)]
    assert min(ends) > 1.5 * max(errors[0], errors[-1]), (np.round(ends, 3), np.round(errors, 3))


def test_planes_between_groups_are_interpolated_and_exact_per_slice():
    from pipelines.illumination.fields import plane_at
    two = np.stack([np.full((2, 3), 1.0, np.float32), np.full((2, 3), 3.0, np.float32)])
    # 8 slices in 2 groups: centres at slices 1.5 and 5.5, constant beyond them
    assert [float(plane_at(two, z, 8)[0, 0]) for z in range(8)] == [1.0, 1.0, 1.25, 1.75, 2.25, 2.75, 3.0, 3.0]
    per_slice = np.arange(5 * 6, dtype=np.float32).reshape(5, 2, 3)
    assert all(np.array_equal(plane_at(per_slice, z, 5), per_slice[z]) for z in range(5))
    flat = np.ones((2, 3), np.float32)
    assert plane_at(flat, 4, 9) is flat


def test_a_dark_spot_is_counted_in_pixels_and_bad_values_are_named():
    """One pixel in 2 304 at 0.008 of the mean was reported 'at 0.0 % of the pixels',
    which read as none; the count says how many. S is judged against its own mean, so a
    supplied field need not have mean 1."""
    from pipelines.illumination.estimate import implausible_gain
    gain = np.full((48, 48), 2.0, np.float32)
    assert implausible_gain(gain) == ""
    gain[10, 20] = 0.016
    assert "falls to 0.008 of the mean at 1 of its 2304 pixels" in implausible_gain(gain)
    assert "its mean is 0" in implausible_gain(np.zeros((4, 4)))
    gain[3, 3] = np.nan
    assert implausible_gain(gain).startswith("1 of its 2304 values is not finite")


def test_a_missing_voxel_in_a_float_tile_counts_its_cell_from_the_rest():
    """Trial O: one NaN voxel in 5 of 64 float tiles made the fields 'not usable' (its
    cell's mean NaN, counted in the top bin); the cell's mean is of its finite pixels,
    so the histogram is that of the tile without the voxel but for that one mean."""
    stack = next(render_tiles(2, (48, 48, 4))).astype(np.float32)
    binning = Binning.for_tiles((48, 48), "float32")
    clean = tile_histogram(stack, binning)
    stack[1, 5, 7], stack[2, 30, 30] = np.nan, np.inf
    damaged = tile_histogram(stack, binning)
    assert damaged.sum() == clean.sum()   # every cell of every slice still counted once
    assert int(np.abs(damaged - clean).sum()) <= 4   # at most the two cells' bins moved
    assert damaged[..., -1].sum() == clean[..., -1].sum()   # nothing piled into the top bin
