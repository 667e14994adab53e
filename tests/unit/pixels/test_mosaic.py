"""A block left in its tiles (`Mosaic`, `fusion.fuse_pieces`) against the block built by
hand: tiles side by side on a grid with gaps, cut by blocks anywhere; slices, fusion and
every object's bytes as each format encodes them must be the same as from the array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import BLENDINGS, CodecConfig
from pipelines.formats import ArraySpec, compressor_for, format_module
from pipelines.formats.objects import encode_region
from pipelines.geometry import Box, to_zyx
from pipelines.pixels import copying, fusion
from pipelines.pixels.fusion import fuse, fuse_pieces
from pipelines.pixels.mosaic import Mosaic
from pipelines.pixels.value_range import ValueRange
from pipelines.tiles import Tile


def side_by_side(cuts, missing=(), dtype="uint16", seed=0):
    """Tiles filling the grid the `cuts` (x, y, z lists of edges) make, except the cells
    in `missing`; their pixels, and the volume they make, placed by plain numpy."""
    rng = np.random.default_rng(seed)
    shape = tuple(c[-1] for c in cuts)
    volume = np.zeros(to_zyx(shape), dtype=dtype)
    tiles, pixels = [], {}
    cells = np.ndindex(*(len(c) - 1 for c in cuts))
    for n, (i, j, k) in enumerate(cells):
        if (i, j, k) in missing:
            continue
        start = (cuts[0][i], cuts[1][j], cuts[2][k])
        size = (cuts[0][i + 1] - start[0], cuts[1][j + 1] - start[1], cuts[2][k + 1] - start[2])
        tile = Tile(n, f"t{n}", start, size)
        pixels[tile.path] = rng.integers(1, 60000, to_zyx(size)).astype(dtype)
        pixels[tile.path].flags.writeable = False   # as a memory-mapped tile reads
        volume[Box(start, tuple(a + b for a, b in zip(start, size))).slices_zyx()] = pixels[tile.path]
        tiles.append(tile)
    return tiles, pixels, volume


def reader(pixels):
    return lambda tile, region: pixels[tile.path][region.slices_zyx()]


CUTS = ([0, 48, 80, 128], [0, 40, 96], [0, 24, 64])
MISSING = {(1, 1, 0)}


def test_a_block_of_several_tiles_side_by_side_stays_in_them():
    tiles, pixels, volume = side_by_side(CUTS, MISSING)
    block = Box((8, 4, 2), (120, 90, 60))
    got = fuse_pieces(block, tiles, (0, 0, 0), "linear", "uint16", read=reader(pixels))
    assert isinstance(got, Mosaic) and len(got.pieces) == 11   # 12 cells, one missing
    want = volume[block.slices_zyx()]
    np.testing.assert_array_equal(got.assemble(), want)
    np.testing.assert_array_equal(got.assemble(), fuse(block, tiles, (0, 0, 0), "linear", "uint16",
                                                       read=reader(pixels)))
    inside = Box((50, 45, 30), (70, 80, 50)).relative_to(block.start)   # in one tile: a view
    part = got[inside.slices_zyx()]
    assert any(np.shares_memory(part, p) for p in pixels.values())
    np.testing.assert_array_equal(part, want[inside.slices_zyx()])
    across = Box((40, 30, 20), (90, 60, 40)).relative_to(block.start)  # four tiles and the gap
    parts = got[across.slices_zyx()]   # views of the tiles' parts, nothing copied
    assert isinstance(parts, Mosaic) and all(any(np.shares_memory(p, t) for t in pixels.values())
                                             for p in parts.pieces)
    np.testing.assert_array_equal(parts.assemble(), want[across.slices_zyx()])


def overlapping(cuts, shifts, missing=(), seed=0):
    """`side_by_side` tiles, then tile n moved by shifts[n] (x, y, z; its size kept), so
    that tiles overlap, stick out of the grid or leave gaps."""
    tiles, pixels, _ = side_by_side(cuts, missing, seed=seed)
    moved = [Tile(t.index, t.path, tuple(max(0, p + d) for p, d in zip(t.position, shift)), t.size)
             for t, shift in zip(tiles, shifts)]
    return moved, pixels


@pytest.mark.parametrize("blending", BLENDINGS)
@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_a_block_where_tiles_overlap_is_its_tiles_and_blended_zones(blending, compiled, monkeypatch):
    """Tiles overlapping inside a block (and a gap): a Mosaic of views of the tiles where
    one tile covers the voxels and of blended zones where several do, whose voxels are
    `fuse`'s (itself checked against brute-force references in test_fusion.py), with the
    shared zones blended by numpy and, for `linear`, by the compiled loop."""
    if not compiled:   # the block is large enough for the compiled blend: kept from it
        monkeypatch.setattr(fusion, "_compiled_blend_applies", lambda *_: False)
    blends = [0]
    real = fusion._blend_linear_compiled
    monkeypatch.setattr(fusion, "_blend_linear_compiled",
                        lambda *args: blends.__setitem__(0, blends[0] + 1) or real(*args))
    shifts = [(0, 0, 0), (-6, 0, 0), (0, 0, 0), (3, -5, 0), (0, 0, -4), (0, 0, 0)] + [(0, 0, 0)] * 6
    tiles, pixels = overlapping(CUTS, shifts, missing={(1, 1, 0)})
    block = Box((8, 4, 2), (120, 90, 60))
    reads = []
    counted = lambda tile, region: reads.append((tile.index, region)) or reader(pixels)(tile, region)  # noqa: E731
    got = fuse_pieces(block, tiles, (0, 0, 0), blending, "uint16", read=counted)
    assert isinstance(got, Mosaic) and len(reads) == len(set(reads))
    want = fuse(block, tiles, (0, 0, 0), blending, "uint16", read=reader(pixels))
    np.testing.assert_array_equal(got.assemble(), want)
    views = sum(any(np.shares_memory(p, t) for t in pixels.values()) for p in got.pieces)
    assert 0 < views < len(got.pieces)   # the tiles' own voxels, and the zones blended
    assert not any(p.flags.writeable for p in got.pieces)
    assert (blends[0] > 0) == (compiled and blending == "linear")   # the path in the test id


@pytest.mark.parametrize("case", ["big-endian", "one tile", "resampled"])
def test_blocks_that_need_fusing_are_fused(case):
    """Pixels of another type than the output (read once all the same), a block inside one
    tile (`fuse` gives a view of it already) and linear interpolation at a fractional
    position all come back as `fuse` gives them."""
    tiles, pixels, _ = side_by_side(CUTS)
    interpolation, block = "nearest", Box((8, 4, 2), (120, 90, 60))
    if case == "big-endian":
        pixels = {k: v.astype(">u2") for k, v in pixels.items()}
    elif case == "one tile":
        block = Box((2, 2, 2), (40, 30, 20))
    else:
        tiles[0] = Tile(tiles[0].index, tiles[0].path, (0.5, 0, 0), tiles[0].size)
        interpolation = "linear"
    reads = []
    counted = lambda tile, region: reads.append((tile.index, region)) or reader(pixels)(tile, region)  # noqa: E731
    got = fuse_pieces(block, tiles, (0, 0, 0), "linear", "uint16", read=counted,
                      interpolation=interpolation)
    assert isinstance(got, np.ndarray)
    assert len(reads) == len(set(reads))   # no region read twice (corrected reads are costly)
    np.testing.assert_array_equal(got, fuse(block, tiles, (0, 0, 0), "linear", "uint16",
                                            read=reader(pixels), interpolation=interpolation))


def test_slices_must_be_plain():
    mosaic = Mosaic((4, 4, 4), np.dtype("uint16"), (), ())
    with pytest.raises(TypeError):
        mosaic[0, :, :]
    with pytest.raises(TypeError):
        mosaic[::2, :, :]
    assert mosaic[1:3, 0:4, 2:9].shape == (2, 4, 2) and not mosaic[1:3, :, :].assemble().any()


@pytest.mark.parametrize("fmt,shard", [("n5", None), ("zarr2", None), ("zarr3", None), ("zarr3", (2, 2, 1))])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_objects_encoded_from_a_mosaic_are_those_of_the_array(fmt, shard, data):
    """Every object's key and bytes, and the range gathered, over blocks of whole objects
    at random places of random side-by-side layouts (cells left empty: fill chunks), or of
    those tiles moved to overlap (the array: `fuse` of the whole volume), in an array whose
    edge chunks are cut short (Zarr pads them) and whose fill value may be other than the
    0 of voxels no tile covers, with the compiled copies in use."""
    shape = (90, 75, 60)
    cuts = [sorted({0, n, *data.draw(st.lists(st.integers(1, n - 1), max_size=2))})
            for n in shape]
    missing = {(0, 0, 0)} if data.draw(st.booleans()) else set()
    seed = data.draw(st.integers(0, 9))
    tiles, pixels, volume = side_by_side(cuts, missing, seed=seed)
    if data.draw(st.booleans()):   # tiles moved: zones they share are blended
        shift = st.tuples(*(st.integers(-7, 7),) * 3)
        tiles, pixels = overlapping(cuts, data.draw(st.lists(shift, min_size=len(tiles),
                                                             max_size=len(tiles))), missing, seed)
        volume = fuse(Box((0, 0, 0), shape), tiles, (0, 0, 0), "linear", "uint16",
                      read=reader(pixels))
    chunks = (16, 16, 16)
    spec = ArraySpec("a", shape, chunks, "uint16", compressor_for(CodecConfig("zstd"), fmt),
                     shard=shard, fill_value=data.draw(st.sampled_from([0, 7])))
    unit = [c * (s or 1) for c, s in zip(chunks, shard or (1, 1, 1))]
    counts = [-(-n // u) for n, u in zip(shape, unit)]
    lo = [data.draw(st.integers(0, c - 1)) * u for c, u in zip(counts, unit)]
    hi = [min(n, data.draw(st.integers(a // u + 1, c)) * u) for a, c, n, u in zip(lo, counts, shape, unit)]
    block = Box(tuple(lo), tuple(hi))
    want = volume[block.slices_zyx()]
    module = format_module(fmt)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(copying, "MIN_BYTES", 0)
        mp.setattr(fusion, "MIN_BYTES", 0)   # blocks this small stay in their pieces too
        got = fuse_pieces(block, tiles, (0, 0, 0), "linear", "uint16", read=reader(pixels))
        assert isinstance(got, Mosaic) or len(fusion._visible(block, tiles, (0, 0, 0), "linear")) <= 1
        seen_got, seen_want = ValueRange(), ValueRange()
        from_pieces = list(encode_region(module, spec, got, block, (), seen_got))
        from_array = list(encode_region(module, spec, want, block, (), seen_want))
    assert [k for k, _ in from_pieces] == [k for k, _ in from_array]
    for (key, a), (_, b) in zip(from_pieces, from_array):
        assert (None if a is None else bytes(a)) == (None if b is None else bytes(b)), key
    assert seen_got.numbers() == seen_want.numbers()


def test_a_mosaic_holds_only_a_value_when_its_pieces_and_gaps_do():
    """Fill chunks are told without assembling: voxels of no piece are 0."""
    fives = np.full((2, 4, 4), 5, dtype="uint16")
    whole = Mosaic((4, 4, 4), np.dtype("uint16"), ((0, 0, 0), (2, 0, 0)), (fives, fives))
    gap = Mosaic((4, 4, 4), np.dtype("uint16"), ((0, 0, 0),), (fives,))
    zeros = Mosaic((4, 4, 4), np.dtype("uint16"), ((2, 0, 0),), (np.zeros_like(fives),))
    assert whole.holds_only(5) and not whole.holds_only(0)
    assert not gap.holds_only(5) and not gap.holds_only(0)   # the gap holds 0, a piece 5
    assert zeros.holds_only(0) and not zeros.holds_only(5)


def test_a_float_chunk_of_negative_zeros_is_written():
    """Trial AB: a float32 chunk of only −0.0 counted as the fill value 0 and was not
    written, so every reader returned +0.0 (zarr-python and tensorstore write such a
    chunk). −0.0 is kept; +0.0 is still the fill value, in an array and in a Mosaic."""
    for fmt in ("n5", "zarr3"):
        spec = ArraySpec("a", (8, 8, 8), (4, 4, 4), "float32", compressor_for(CodecConfig("raw"), fmt))
        module = format_module(fmt)
        for sign, written in ((-0.0, 8), (0.0, 0)):
            block = np.full((8, 8, 8), sign, dtype="float32")
            pieces = Mosaic((8, 8, 8), np.dtype("float32"), ((0, 0, 0),), (block,))
            for values in (block, pieces):
                objects = list(encode_region(module, spec, values, Box((0, 0, 0), (8, 8, 8))))
                assert sum(data is not None for _, data in objects) == written, (fmt, sign)
    assert not Mosaic((4, 4, 4), np.dtype("float64"), ((0, 0, 0),),
                      (np.full((2, 4, 4), -0.0),)).holds_only(0)
