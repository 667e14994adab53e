"""Pyramid math and pixels: level factors, shapes, translations, and downsampling checked
against slow per-window references, including the block-wise = global property."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipelines.geometry import BlockGrid, ChunkGrid, ceil_div, grid_indices, to_zyx
from pipelines.pixels.pyramid import (
    cumulative_factors,
    downsample,
    in_block_levels,
    level_factors,
    level_shapes,
)

ANISO = (0.4, 0.4, 2.0)


# ---------------------------------------------------------------- level factors and shapes

@pytest.mark.parametrize("shape, chunks, resolution, levels, expected", [
    # anisotropic: z is 5× coarser, so only x, y halve until they come within √2 of z
    ((1024, 1024, 1024), (64, 64, 64), ANISO, 5, [(2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)]),
    ((1024, 1024, 1024), (64, 64, 64), (1, 1, 1), 4, [(2, 2, 2)] * 3),
    # z finer than x, y: z catches up first
    ((1024, 1024, 1024), (64, 64, 64), (1, 1, 0.25), 4, [(1, 1, 2), (1, 1, 2), (2, 2, 2)]),
    # a ratio of exactly √2 counts as "within √2"
    ((1024, 1024, 1024), (64, 64, 64), (1, 1, 2 ** 0.5), 3, [(2, 2, 2), (2, 2, 2)]),
    # ... and so does √2 as a user types it, a few 1e-11 above the binary value
    ((1024, 1024, 1024), (64, 64, 64), (1, 1, 1.4142135624), 3, [(2, 2, 2), (2, 2, 2)]),
    ((1024, 1024, 1024), (64, 64, 64), (1, 1, 1.4143), 3, [(2, 2, 1), (2, 2, 2)]),
    # one plane thick: z never shrinks, and its small voxel must not stop x, y from halving
    ((256, 256, 1), (64, 64, 64), (1, 1, 1), 4, [(2, 2, 1)] * 3),
    ((256, 256, 1), (64, 64, 64), ANISO, 4, [(2, 2, 1)] * 3),
    # z runs out of voxels part way: it stays at 1 while x, y go on
    ((64, 64, 8), (64, 64, 64), (1, 1, 1), 6, [(2, 2, 2)] * 3 + [(2, 2, 1)] * 2),
    ((100, 100, 100), (10, 10, 10), (1, 1, 1), 1, []),
    # "auto": stop as soon as the coarsest level fits in one chunk
    ((256, 256, 64), (64, 64, 64), (1, 1, 1), "auto", [(2, 2, 2)] * 2),
    ((257, 256, 64), (64, 64, 64), (1, 1, 1), "auto", [(2, 2, 2)] * 3),
    ((64, 64, 64), (64, 64, 64), (1, 1, 1), "auto", []),
    ((65, 64, 64), (64, 64, 64), (1, 1, 1), "auto", [(2, 2, 2)]),
    ((512, 512, 64), (64, 64, 64), ANISO, "auto", [(2, 2, 1), (2, 2, 1), (2, 2, 2)]),
    ((512, 512, 1), (64, 64, 64), ANISO, "auto", [(2, 2, 1)] * 3),
])
def test_level_factors_table(shape, chunks, resolution, levels, expected):
    assert level_factors(shape, chunks, resolution, levels) == expected


@pytest.mark.parametrize("kwargs", [
    dict(levels=0), dict(levels=-2), dict(levels=True), dict(levels=2.0), dict(levels="AUTO"),
    dict(shape=(0, 10, 10)), dict(shape=(10, 10)), dict(chunks=(8, 8, 0)),
    dict(resolution=(1, -1, 1)), dict(resolution=(1, float("nan"), 1)), dict(resolution="abc"),
    dict(shape=(4, 4, 4), levels=4),  # 4 → 2 → 1: a 4th level would copy the 1×1×1 one
])
def test_level_factors_rejects(kwargs):
    args = dict(shape=(100, 100, 100), chunks=(8, 8, 8), resolution=(1, 1, 1), levels=2)
    with pytest.raises(ValueError):
        level_factors(**{**args, **kwargs})


@settings(max_examples=200, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 5000)] * 3), chunks=st.tuples(*[st.integers(1, 300)] * 3),
       resolution=st.tuples(*[st.sampled_from([0.1, 0.25, 0.4, 1.0, 2.0, 5.0])] * 3))
def test_auto_levels_stop_exactly_when_the_coarsest_fits_one_chunk(shape, chunks, resolution):
    factors = level_factors(shape, chunks, resolution, "auto")
    shapes = level_shapes(shape, factors)
    assert all(s <= c for s, c in zip(shapes[-1], chunks))
    if len(shapes) > 1:
        assert any(s > c for s, c in zip(shapes[-2], chunks))
    for before, step in zip(shapes, factors):
        assert set(step) <= {1, 2} and step != (1, 1, 1)
        assert all(f == 1 for s, f in zip(before, step) if s == 1)


def test_level_shapes_and_cumulative_factors():
    factors = [(2, 2, 1), (2, 2, 1), (2, 2, 2)]
    assert level_shapes((1000, 513, 7), factors) == [
        (1000, 513, 7), (500, 257, 7), (250, 129, 7), (125, 65, 4)]
    assert cumulative_factors(factors) == [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 2)]
    assert cumulative_factors([]) == [(1, 1, 1)]
    assert level_shapes((5, 6, 7), []) == [(5, 6, 7)]


# ---------------------------------------------------------------- translation, in-block levels

@pytest.mark.parametrize("resolution, total, expected", [
    (ANISO, (1, 1, 1), (0.0, 0.0, 0.0)),
    (ANISO, (2, 2, 1), (0.2, 0.2, 0.0)),
    (ANISO, (8, 8, 2), (1.4, 1.4, 1.0)),
    ((1, 1, 1), (4, 4, 4), (1.5, 1.5, 1.5)),
    ((0.5, 1, 3), (3, 1, 2), (0.5, 0.0, 1.5)),
])
def test_translation_table(resolution, total, expected):
    assert translation(resolution, total) == pytest.approx(expected)


def translation(resolution, total):
    """The level translation the metadata writes (viewers.level_translations), origin 0."""
    from pipelines.layouts.viewers import level_translations
    return level_translations(resolution, [(1, 1, 1), tuple(total)])[1]


@pytest.mark.parametrize("total", [(2, 2, 1), (4, 2, 1), (3, 3, 3)])
def test_translation_matches_where_mean_windows_put_coarse_centres(total):
    """Fill level 0 with each voxel's physical centre (x, y, z); its window mean is the coarse
    voxel's centre, which must be translation + index · F · resolution."""
    resolution, shape = (0.4, 0.7, 2.0), (12, 6, 6)  # divisible: no partial windows
    offset = translation(resolution, total)
    for axis in range(3):
        centres = np.indices(to_zyx(shape), dtype=np.float64)[2 - axis] * resolution[axis]
        coarse = downsample(centres, total)
        index = np.indices(coarse.shape)[2 - axis]
        expected = offset[axis] + index * total[axis] * resolution[axis]
        np.testing.assert_allclose(coarse, expected, atol=1e-12)


ANISO_CUM = [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 2), (16, 16, 4)]


@pytest.mark.parametrize("per_block, cumulative, expected", [
    ((4, 4, 4), [(1, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8)], 3),
    ((1, 1, 1), [(1, 1, 1), (2, 2, 2)], 1),
    ((2, 2, 1), ANISO_CUM, 2),
    ((4, 4, 1), ANISO_CUM, 3),
    ((8, 8, 2), ANISO_CUM, 4),
    ((16, 16, 4), ANISO_CUM, 5),
    ((16, 8, 4), ANISO_CUM, 4),
    ((3, 3, 3), [(1, 1, 1), (3, 3, 3), (9, 9, 9)], 2),
    ((6, 1, 1), [(1, 1, 1), (3, 1, 1), (2, 1, 1)], 3),
    ((2, 1, 1), [(1, 1, 1), (3, 1, 1), (2, 1, 1)], 1),  # a failed level stops the count
    ((4, 4, 4), [(1, 1, 1)], 1),
])
def test_in_block_levels_table(per_block, cumulative, expected):
    assert in_block_levels(per_block, cumulative) == expected


# ---------------------------------------------------------------- downsample vs references

def _bounds(dtype):
    return (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)


def _windows(shape_zyx, factor_xyz):
    """(output index, exact input slice) of every window, clipped at the far edges."""
    step = to_zyx(factor_xyz)
    for out in np.ndindex(*(ceil_div(n, f) for n, f in zip(shape_zyx, step))):
        yield out, tuple(slice(i * f, min((i + 1) * f, n)) for i, f, n in zip(out, step, shape_zyx))


def reference_mean(data, factor):
    out = np.empty(tuple(ceil_div(n, f) for n, f in zip(data.shape, to_zyx(factor))), data.dtype)
    for index, window in _windows(data.shape, factor):
        value = data[window].astype(np.float64).mean()
        out[index] = value if data.dtype.kind == "f" else np.clip(np.rint(value), *_bounds(data.dtype))
    return out


def reference_mode(data, factor):
    out = np.empty(tuple(ceil_div(n, f) for n, f in zip(data.shape, to_zyx(factor))), data.dtype)
    for index, window in _windows(data.shape, factor):
        counts = Counter(data[window].ravel().tolist())
        most = max(counts.values())
        out[index] = min(v for v, c in counts.items() if c == most)
    return out


INT_TYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
shapes = st.tuples(*[st.integers(1, 17)] * 3)
factors = st.tuples(*[st.sampled_from([1, 2, 3])] * 3)


@st.composite
def mean_inputs(draw):
    dtype = np.dtype(draw(st.sampled_from(INT_TYPES + [np.float32, np.float64, np.bool_])))
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, width=dtype.itemsize * 8)
    elif dtype.itemsize == 8:  # float64 sums of 64-bit ints are exact only below 2**53
        lo, hi = _bounds(dtype)
        elements = st.integers(max(lo, -2 ** 48), min(hi, 2 ** 48))
    else:
        elements = None  # hypothesis' default: the whole range, extremes included
    return draw(arrays(dtype, to_zyx(draw(shapes)), elements=elements)), draw(factors)


@settings(max_examples=300, deadline=None)
@given(case=mean_inputs())
def test_mean_matches_slow_reference(case):
    data, factor = case
    got, expected = downsample(data, factor, "mean"), reference_mean(data, factor)
    assert got.dtype == data.dtype and got.shape == expected.shape
    if data.dtype.kind == "f":  # summation order may differ by an ulp or so
        eps = np.finfo(data.dtype).eps
        scale = float(np.abs(data).max())
        np.testing.assert_allclose(got, expected, rtol=2 * eps, atol=64 * eps * scale)
    else:
        np.testing.assert_array_equal(got, expected)


@st.composite
def mode_inputs(draw):
    dtype = np.dtype(draw(st.sampled_from(INT_TYPES + [np.float32, np.float64, np.bool_])))
    if dtype.kind == "f":
        values = [-3.5, -1.0, 0.0, 1.0, 2.25, 7.0, float(np.finfo(dtype).max)]
    elif dtype.kind == "b":
        values = [False, True]
    else:  # few distinct labels so windows have repeats and ties; extremes included
        lo, hi = _bounds(dtype)
        values = sorted({lo, lo + 1, 0, 1, 2, 3, hi - 1, hi})
    data = draw(arrays(dtype, to_zyx(draw(shapes)), elements=st.sampled_from(values)))
    return data, draw(factors)


@settings(max_examples=300, deadline=None)
@given(case=mode_inputs())
def test_mode_matches_counter_reference(case):
    data, factor = case
    got = downsample(data, factor, "mode")
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, reference_mode(data, factor))


# ---------------------------------------------------------------- pieces = whole

@settings(max_examples=200, deadline=None)
@given(shape=shapes, factor=factors, cut=st.tuples(*[st.integers(0, 17)] * 3),
       method=st.sampled_from(["mean", "mode"]), seed=st.integers(0, 2 ** 32 - 1))
def test_pieces_aligned_to_the_factor_compose_to_the_whole(shape, factor, cut, method, seed):
    """Cut every axis at a multiple of its factor (so ≤ 8 pieces, the far ones ending at the
    volume's edge with partial windows): the pieces' results tile the whole's result."""
    data = np.random.default_rng(seed).integers(0, 6, to_zyx(shape), dtype=np.uint16)
    cut = tuple(min(c, s // f) * f for c, s, f in zip(cut, shape, factor))  # x, y, z voxels
    whole = downsample(data, factor, method)
    pieces = np.full_like(whole, 9999)
    for lo, hi in [((0, 0, 0), cut), (cut, shape)] + _mixed(cut, shape):
        box = tuple(slice(a, b) for a, b in zip(to_zyx(lo), to_zyx(hi)))
        if data[box].size:
            out = tuple(slice(a // f, ceil_div(b, f)) for a, b, f in
                        zip(to_zyx(lo), to_zyx(hi), to_zyx(factor)))
            pieces[out] = downsample(data[box], factor, method)
    np.testing.assert_array_equal(pieces, whole)


def _mixed(cut, shape):
    """The six pieces that are low on some axes and high on others."""
    boxes = []
    for sides in np.ndindex(2, 2, 2):
        if 0 < sum(sides) < 3:
            boxes.append((tuple(c if s else 0 for c, s in zip(cut, sides)),
                          tuple(n if s else c for c, n, s in zip(cut, shape, sides))))
    return boxes


@settings(max_examples=100, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 40)] * 3), chunk=st.tuples(*[st.integers(1, 6)] * 3),
       per_block=st.tuples(*[st.sampled_from([1, 2, 3, 4, 8])] * 3),
       resolution=st.sampled_from([(1, 1, 1), ANISO, (1, 1, 0.25)]),
       method=st.sampled_from(["mean", "mode"]), seed=st.integers(0, 2 ** 32 - 1))
def test_in_block_pyramids_equal_the_global_pyramid(shape, chunk, per_block, resolution,
                                                    method, seed):
    """Every block computes its first in_block_levels levels alone; they must equal the
    matching region of the pyramid built over the whole volume."""
    factors = level_factors(shape, chunk, resolution, "auto")
    total = cumulative_factors(factors)
    own = in_block_levels(per_block, total)
    level0 = np.random.default_rng(seed).integers(0, 1000, to_zyx(shape), dtype=np.uint16)
    pyramid = [level0]
    for step in factors:
        pyramid.append(downsample(pyramid[-1], step, method))
    grid = BlockGrid(ChunkGrid(shape, chunk), per_block)
    for block in grid_indices(grid.counts):
        box = grid.block_box(block)
        local = level0[box.slices_zyx()]
        for k in range(1, own):
            local = downsample(local, factors[k - 1], method)
            region = tuple(slice(a // f, ceil_div(b, f)) for a, b, f in
                           zip(to_zyx(box.start), to_zyx(box.stop), to_zyx(total[k])))
            np.testing.assert_array_equal(local, pyramid[k][region])


# ---------------------------------------------------------------- dtypes, rounding, edges

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("method", ["mean", "mode"])
def test_dtype_is_preserved(dtype, method):
    data = np.arange(5 * 6 * 7).reshape(5, 6, 7).astype(dtype)
    assert downsample(data, (2, 2, 2), method).dtype == np.dtype(dtype)
    assert downsample(data, (2, 2, 2), method).shape == (3, 3, 4)


@pytest.mark.parametrize("dtype, values, expected", [
    (np.uint8, [255, 255, 254, 254], 254),  # 254.5 → even
    (np.uint8, [255, 255, 255, 254], 255),  # 254.75
    (np.uint8, [1, 1, 2, 2], 2),  # 1.5 → even
    (np.uint8, [2, 2, 3, 3], 2),  # 2.5 → even
    (np.uint16, [65535] * 4, 65535),  # no overflow while summing
    (np.uint16, [65535, 65535, 65535, 65534], 65535),
    (np.int16, [-32768, -32768, -32767, -32767], -32768),  # -32767.5 → even
    (np.int16, [32767, 32767, -32768, -32768], 0),  # -0.5 → even (0)
    (np.float32, [1, 2, 2, 2], 1.75),
])
def test_mean_rounds_half_to_even_without_overflow(dtype, values, expected):
    data = np.array(values, dtype=dtype).reshape(1, 2, 2)
    got = downsample(data, (2, 2, 1), "mean")
    assert got.dtype == np.dtype(dtype) and got.shape == (1, 1, 1)
    assert got[0, 0, 0] == expected


def test_mean_of_huge_uint64_does_not_wrap():
    data = np.full((2, 2, 2), 2 ** 64 - 1, dtype=np.uint64)
    got = downsample(data, (2, 2, 2), "mean")[0, 0, 0]
    assert 2 ** 64 - 4096 <= int(got) <= 2 ** 64 - 1  # float64 nearest, clipped below 2**64


def test_partial_edge_windows_use_only_existing_voxels():
    data = np.array([[[1, 2, 9]]], dtype=np.uint8)  # x = 3, factor 2: windows [1, 2] and [9]
    np.testing.assert_array_equal(downsample(data, (2, 1, 1), "mean"), [[[2, 9]]])
    labels = np.array([[[7, 7, 3], [1, 2, 3]]], dtype=np.uint32)  # window (2×2), then (1×2)
    np.testing.assert_array_equal(downsample(labels, (2, 2, 1), "mode"), [[[7, 3]]])


@pytest.mark.parametrize("values, expected", [
    ([5, 5, 3, 3], 3),  # tie → smallest
    ([9, 1, 9, 2], 9),
    ([4, 3, 2, 1], 1),
    ([2 ** 64 - 1, 2 ** 64 - 1, 2 ** 63, 1], 2 ** 64 - 1),  # exact for uint64 labels
    ([2 ** 64 - 1, 2 ** 64 - 2, 2 ** 64 - 1, 2 ** 64 - 2], 2 ** 64 - 2),  # float64 can't tell
])
def test_mode_picks_most_frequent_then_smallest(values, expected):
    data = np.array(values, dtype=np.uint64).reshape(1, 2, 2)
    assert int(downsample(data, (2, 2, 1), "mode")[0, 0, 0]) == expected


def test_factor_one_leaves_an_axis_untouched():
    data = np.random.default_rng(1).integers(0, 100, (6, 5, 4)).astype(np.float64)
    np.testing.assert_array_equal(downsample(data, (1, 1, 2), "mean"),
                                  (data[0::2] + data[1::2]) / 2)
    np.testing.assert_array_equal(downsample(data, (2, 1, 1), "mean"),
                                  (data[..., 0::2] + data[..., 1::2]) / 2)
    same = downsample(data, (1, 1, 1), "mode")
    np.testing.assert_array_equal(same, data)
    assert same is not data
    huge = np.array([2 ** 64 - 1, 2 ** 53 + 1], dtype=np.uint64).reshape(1, 1, 2)
    np.testing.assert_array_equal(downsample(huge, (1, 1, 1), "mean"), huge)  # exact copy


@pytest.mark.parametrize("data, factor, method", [
    (np.zeros((4, 4)), (2, 2, 2), "mean"),
    (np.zeros((4, 4, 4)), (2, 0, 2), "mean"),
    (np.zeros((4, 4, 4)), (2, 2), "mean"),
    (np.zeros((4, 4, 4)), (2, 2, 2), "median"),
    (np.zeros((4, 4, 4), dtype=np.complex64), (2, 2, 2), "mean"),
])
def test_downsample_rejects_bad_input(data, factor, method):
    with pytest.raises(ValueError):
        downsample(data, factor, method)


def test_means_over_nan_and_opposite_infinities_are_nan_without_a_warning():
    """NaN spreads into the means over it, as documented; +inf and -inf in one window make
    NaN too. numpy's RuntimeWarning for them reached the console of every export of such
    tiles, looking like an error (trial AI)."""
    import warnings
    data = np.ones((2, 2, 4), np.float32)
    data[0, 0, 0] = np.nan
    data[0, 0, 2], data[1, 1, 3] = np.inf, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = downsample(data, (2, 2, 2))
    assert out.shape == (1, 1, 2) and np.isnan(out).all()
