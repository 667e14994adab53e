"""`pipelines.pixels.copying.copy_region` against numpy's own assignment: every type the output
formats store, either byte order on either side, boxes of C-ordered arrays and of
memory-mapped files on both sides."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.pixels import copying
from pipelines.pixels.value_range import ValueRange

TYPES = ["u1", "i1", "u2", "i2", "u4", "i4", "f4", "u8", "i8", "f8"]


@st.composite
def boxes(draw):
    """A parent shape and a box inside it, z, y, x."""
    parent = draw(st.tuples(*[st.integers(1, 9)] * 3))
    start = tuple(draw(st.integers(0, n - 1)) for n in parent)
    stop = tuple(draw(st.integers(s + 1, n)) for s, n in zip(start, parent))
    return parent, tuple(slice(a, b) for a, b in zip(start, stop))


@given(kind=st.sampled_from(TYPES), orders=st.tuples(st.sampled_from("<>"), st.sampled_from("<>")),
       source=boxes(), into_box=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the same patch for every input
def test_copy_region_gives_numpys_values_and_bytes(kind, orders, source, into_box, seed, monkeypatch):
    monkeypatch.setattr(copying, "MIN_BYTES", 0)   # the compiled loop even for small boxes
    rng = np.random.default_rng(seed)
    parent_shape, box = source
    parent = rng.integers(0, 256, size=np.prod(parent_shape) * np.dtype(kind).itemsize,
                          dtype=np.uint8).view(np.dtype(kind).newbyteorder(orders[0]))
    values = parent.reshape(parent_shape)[box]
    shape = values.shape
    if into_box:   # the target is a box of a larger array (fusion writes tiles into a block)
        big = np.zeros(tuple(n + 3 for n in shape), np.dtype(kind).newbyteorder(orders[1]))
        out = big[1:1 + shape[0], 2:2 + shape[1], 3:3 + shape[2]]
    else:
        out = np.zeros(shape, np.dtype(kind).newbyteorder(orders[1]))
    assert copying._compiled_applies((out,), values)
    expected = np.empty(shape, out.dtype)
    expected[...] = values
    copying.copy_region(out, values)
    assert out.tobytes() == expected.tobytes()
    if into_box:   # nothing outside the box was touched
        outside = np.ones(big.shape, bool)
        outside[1:1 + shape[0], 2:2 + shape[1], 3:3 + shape[2]] = False
        assert not big[outside].any()


def test_a_memory_mapped_source_and_a_large_region(tmp_path):
    """The real case: a box of a memory-mapped tile into a big-endian chunk buffer of
    more than MIN_BYTES, and the same box into a little-endian one."""
    tile = np.lib.format.open_memmap(tmp_path / "tile.npy", "w+", np.uint16, (40, 300, 310))
    tile[...] = np.random.default_rng(1).integers(0, 65535, tile.shape, dtype=np.uint16)
    tile.flush()
    source = np.load(tmp_path / "tile.npy", mmap_mode="r")[3:35, 10:266, 20:276]
    for order in "><":
        out = np.empty(source.shape, np.dtype("u2").newbyteorder(order))
        assert out.nbytes >= copying.MIN_BYTES and copying._compiled_applies((out,), source)
        copying.copy_region(out, source)
        assert np.array_equal(out, source)
        assert out.tobytes() == source.astype(out.dtype).tobytes()


@pytest.mark.parametrize("case", ["overlapping", "transposed", "reversed", "other type", "2d"])
def test_what_the_loop_cannot_copy_goes_to_numpy(case, monkeypatch):
    monkeypatch.setattr(copying, "MIN_BYTES", 0)
    data = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    out, values = {
        "overlapping": (data[1:], data[:-1]),
        "transposed": (np.empty((6, 5, 4), np.uint16), data.T),
        "reversed": (np.empty((4, 5, 6), np.uint16), data[:, :, ::-1]),
        "other type": (np.empty((4, 5, 6), np.float32), data),
        "2d": (np.empty((5, 6), np.uint16), data[0]),
    }[case]
    assert not copying._compiled_applies((out,), values)
    expected = values.astype(out.dtype)   # a copy taken before `out` changes
    copying.copy_region(out, values)
    assert np.array_equal(out, expected)


@given(kind=st.sampled_from(TYPES), orders=st.tuples(st.sampled_from("<>"), st.sampled_from("<>")),
       source=boxes(), cuts=st.lists(st.integers(0, 9), max_size=4), watch=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_copy_columns_gives_each_region_its_columns(kind, orders, source, cuts, watch, seed,
                                                    monkeypatch):
    """A box cut along x into regions side by side, each a box of an array of its own
    (chunk buffers padded at the far edge): numpy's values and bytes in every region,
    nothing outside them touched, and the box's range when watched."""
    monkeypatch.setattr(copying, "MIN_BYTES", 0)
    rng = np.random.default_rng(seed)
    parent_shape, box = source
    parent = rng.integers(0, 256, size=np.prod(parent_shape) * np.dtype(kind).itemsize,
                          dtype=np.uint8).view(np.dtype(kind).newbyteorder(orders[0]))
    values = parent.reshape(parent_shape)[box]
    nz, ny, nx = values.shape
    edges = sorted({0, nx, *(c for c in cuts if 0 < c < nx)})
    bigs = [np.zeros((nz + 1, ny + 2, b - a + 1), np.dtype(kind).newbyteorder(orders[1]))
            for a, b in zip(edges, edges[1:])]
    outs = [big[1:, :ny, :big.shape[2] - 1] for big in bigs]
    assert copying._compiled_applies(outs, values)
    seen = ValueRange() if watch else None
    copying.copy_columns(outs, values, seen)
    for out, big, a, b in zip(outs, bigs, edges, edges[1:]):
        expected = np.empty(out.shape, out.dtype)
        expected[...] = values[:, :, a:b]
        assert out.tobytes() == expected.tobytes()
        outside = np.ones(big.shape, bool)
        outside[1:, :ny, :big.shape[2] - 1] = False
        assert not big[outside].any()
    if watch and values.dtype.kind in "ui":   # NaNs of float bytes have no order to test
        assert seen.numbers() == (values.min(), values.max())


@pytest.mark.parametrize("order", "<>")
def test_more_regions_than_one_copy_fills_go_in_groups(order, monkeypatch):
    """More regions than MAX_COLUMNS, of several widths, from a box of a larger array:
    each gets its own columns, and the range covers them all."""
    monkeypatch.setattr(copying, "MIN_BYTES", 0)
    widths = [1, 3, 2, 5, 1, 4, 2, 2, 3, 1, 6]
    assert len(widths) > copying.MAX_COLUMNS
    parent = np.random.default_rng(5).integers(10, 60000, (5, 7, sum(widths) + 4), dtype=np.uint16)
    parent[2, 3, 30], parent[4, 6, 2] = 3, 65000   # the extremes: in the last region, the first
    values = parent[:, :, 2:2 + sum(widths)]
    outs = [np.zeros((5, 7, w), np.dtype(np.uint16).newbyteorder(order)) for w in widths]
    seen = ValueRange()
    copying.copy_columns(outs, values, seen)
    edges = np.cumsum([0, *widths])
    for out, a, b in zip(outs, edges, edges[1:]):
        assert np.array_equal(out, values[:, :, a:b])
    assert seen.numbers() == (3, 65000)


def test_copy_columns_refuses_regions_that_do_not_cut_the_values():
    values = np.zeros((2, 3, 10), np.uint16)
    for outs in ([np.empty((2, 3, 4), np.uint16)],                                  # too narrow
                 [np.empty((2, 3, 4), np.uint16), np.empty((2, 2, 6), np.uint16)],  # other height
                 [np.empty((3, 10), np.uint16)]):                                   # not 3D
        with pytest.raises(ValueError, match="do not cut"):
            copying.copy_columns(outs, values)
