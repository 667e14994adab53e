"""Fusion rules on known tiles: single-tile voxels are exact, overlaps follow each rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import BLENDINGS
from pipelines.geometry import Box
from pipelines.pixels import copying, fusion
from pipelines.pixels.fusion import fuse
from pipelines.pixels.pyramid import to_dtype as cast
from pipelines.pixels.resample import INTERPOLATIONS
from pipelines.tiles import Tile, TileSet

RULES = list(BLENDINGS)   # every rule the job file offers (trial R: a new one was missed)


def two_tiles(a_value=None, b_value=None):
    """Tile 0 at x 0..20, tile 1 at x 12..32 (overlap x 12..20); 6 × 5 in y, z."""
    rng = np.random.default_rng(3)
    a = rng.integers(100, 1000, (5, 6, 20)).astype("uint16") if a_value is None else np.full((5, 6, 20), a_value, "uint16")
    b = rng.integers(100, 1000, (5, 6, 20)).astype("uint16") if b_value is None else np.full((5, 6, 20), b_value, "uint16")
    tiles = [Tile(0, "a", (0, 0, 0), (20, 6, 5)), Tile(1, "b", (12, 0, 0), (20, 6, 5))]
    pixels = {"a": a, "b": b}
    return tiles, pixels


def reader(pixels):
    def read(tile, region):
        return pixels[tile.path][region.slices_zyx()]
    return read


TWO_TILES_BOX = Box((0, 0, 0), (32, 6, 5))


def fused(tiles, pixels, rule, block=TWO_TILES_BOX):
    return fuse(block, tiles, (0, 0, 0), rule, "uint16", read=reader(pixels))


@pytest.mark.parametrize("rule", RULES)
def test_voxels_covered_by_one_tile_equal_that_tile(rule):
    tiles, pixels = two_tiles()
    out = fused(tiles, pixels, rule)
    np.testing.assert_array_equal(out[:, :, :12], pixels["a"][:, :, :12])
    np.testing.assert_array_equal(out[:, :, 20:], pixels["b"][:, :, 8:])


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("tile_type, out_type", [("GRAY16", "float32"), ("GRAY32", "float32"),
                                                 ("GRAY32", "float64"), ("GRAY32", "uint16")])
def test_voxels_one_tile_covers_keep_their_value_where_a_type_is_float(rule, tile_type, out_type):
    """Trial N: `linear` summed w·v and w in float32, and (w·v)/w can be 1 ulp from v: a
    uint16 tile fused into float32 gave 56290.996 for 56291, whole-number float32 tiles
    came out non-integer, and float32 x.5 values into uint16 rounded up where half to
    even rounds down (26962.5 → 26963). The reference is the tile's own values (rounded
    half to even into an integer output)."""
    rng = np.random.default_rng(11)
    shape = (5, 6, 20)
    if tile_type == "GRAY16":
        a, b = (rng.integers(0, 65536, shape).astype("uint16") for _ in range(2))
    else:   # many exact halves, and values with every mantissa bit
        a = (np.round(rng.uniform(0, 60000, shape) * 2) / 2).astype("float32")
        b = rng.uniform(0, 60000, shape).astype("float32")
    tiles = [Tile(0, "a", (0, 0, 0), (20, 6, 5), type=tile_type),
             Tile(1, "b", (12, 0, 0), (20, 6, 5), type=tile_type)]
    out = fuse(TWO_TILES_BOX, tiles, (0, 0, 0), rule, out_type, read=reader({"a": a, "b": b}))
    assert out.dtype == np.dtype(out_type)

    def expected(values):
        if np.dtype(out_type).kind == "f":
            return values.astype(out_type)
        return np.clip(np.rint(values.astype(np.float64)), 0, 65535).astype(out_type)
    np.testing.assert_array_equal(out[:, :, :12], expected(a[:, :, :12]))
    np.testing.assert_array_equal(out[:, :, 20:], expected(b[:, :, 8:]))


def test_overlap_rules():
    tiles, pixels = two_tiles()
    a, b = pixels["a"][:, :, 12:].astype(float), pixels["b"][:, :, :8].astype(float)
    np.testing.assert_array_equal(fused(tiles, pixels, "max")[:, :, 12:20], np.maximum(a, b))
    np.testing.assert_array_equal(fused(tiles, pixels, "first")[:, :, 12:20], a)
    np.testing.assert_array_equal(fused(tiles, pixels, "average")[:, :, 12:20], np.rint((a + b) / 2))
    tiles_reversed = [Tile(0, "b", (12, 0, 0), (20, 6, 5)), Tile(1, "a", (0, 0, 0), (20, 6, 5))]
    np.testing.assert_array_equal(fused(tiles_reversed, pixels, "first")[:, :, 12:20], b)


def test_linear_blending_fades_from_one_tile_to_the_other():
    tiles, pixels = two_tiles(a_value=1000, b_value=2000)
    row = fused(tiles, pixels, "linear")[2, 3, :].astype(int)
    overlap = row[12:20]
    assert (np.diff(overlap) > 0).all(), overlap          # rises monotonically
    assert overlap[0] < 1200 and overlap[-1] > 1800     # near A at one end, near B at the other
    assert (row[:12] == 1000).all() and (row[20:] == 2000).all()


def test_linear_weights_follow_distance_to_the_edges():
    tiles, pixels = two_tiles(a_value=0, b_value=1000)
    out = fused(tiles, pixels, "linear")[2, 3, 12:20].astype(float)
    # at x = 12 + k (voxel centre k + 0.5 inside B, 7.5 - k inside A's end): B's weight share
    k = np.arange(8) + 0.5
    expected = 1000 * k / (k + (8 - k))
    np.testing.assert_allclose(out, np.rint(expected), atol=1)


@pytest.mark.parametrize("rule", RULES)
def test_voxels_no_tile_covers_are_zero_and_blocks_can_be_partial(rule):
    tiles, pixels = two_tiles()
    out = fuse(Box((28, 0, 0), (40, 6, 5)), tiles, (0, 0, 0), rule, "uint16", read=reader(pixels))
    np.testing.assert_array_equal(out[:, :, :4], pixels["b"][:, :, 16:20])
    assert (out[:, :, 4:] == 0).all()


def test_offset_places_tiles_in_output_coordinates():
    tiles, pixels = two_tiles()
    shifted = [Tile(t.index, t.path, tuple(p + 100 for p in t.position), t.size) for t in tiles]
    block = Box((0, 0, 0), (32, 6, 5))
    out = fuse(block, shifted, (100, 100, 100), "max", "uint16", read=reader(pixels))
    np.testing.assert_array_equal(out, fused(tiles, pixels, "max"))


def test_cast_rounds_and_clips():
    values = np.array([-3.0, 0.4, 0.6, 254.5, 300.0], dtype=np.float32)
    np.testing.assert_array_equal(cast(values, "uint8"), [0, 0, 1, 254, 255])
    assert cast(values, "float32").dtype == np.float32


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32"])
def test_non_finite_values_cast_as_documented(dtype):
    """Trial N: NaN → 0, +inf → the type's largest value, −inf its smallest, by both casts
    (`cast`, and `_cast_owned` of blended float32 sums), not as the platform happens to."""
    info = np.iinfo(dtype)
    values = np.array([np.nan, np.inf, -np.inf, 2.5], dtype=np.float32)
    expected = [0, info.max, info.min, 2]
    np.testing.assert_array_equal(cast(values, dtype), expected)
    np.testing.assert_array_equal(fusion._cast_owned(values.copy(), dtype), expected)


@pytest.mark.parametrize("dtype,values,expected", [
    ("int32", [3e9, -3e9, 2147483647.0], [2147483647, -2147483648, 2147483647]),
    ("uint32", [5e9, 4294967295.0, -1.0], [4294967295, 4294967295, 0]),
])
def test_cast_saturates_wide_integer_types(dtype, values, expected):
    np.testing.assert_array_equal(cast(np.array(values, dtype=np.float32), dtype), expected)


# --- interpolation: tiles at sub-voxel positions ------------------------------------------

def recording_reader(pixels, log):
    """Crops the test's arrays like `read_region` does, refusing regions outside the tile,
    and records every region asked for."""
    def read(tile, region):
        assert region.intersect(Box((0, 0, 0), tile.size)) == region, (tile.index, region)
        log.append((tile.index, region))
        return pixels[tile.path][region.slices_zyx()]
    return read


def ramp(size, a=1.5, b=-0.75, c=2.25, d=10.0):
    """f(x, y, z) = a x + b y + c z + d on a tile of `size` (x, y, z), as z, y, x float32."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in reversed(size)), indexing="ij")
    return (a * x + b * y + c * z + d).astype(np.float32), (a, b, c, d)


def scattered_tiles():
    """Four overlapping tiles at fractional (and negative) positions, random uint16 pixels."""
    rng = np.random.default_rng(7)
    positions = [(-0.25, 0.5, -1.75), (13.5, -0.75, 0.25), (0.75, 9.25, 0.5), (12.25, 8.5, -0.5)]
    tiles = [Tile(i, f"t{i}", p, (17, 12, 7)) for i, p in enumerate(positions)]
    pixels = {t.path: rng.integers(0, 4000, (7, 12, 17)).astype("uint16") for t in tiles}
    return tiles, pixels


def output_volume(tiles):
    """The offset and output box of `tiles`, as the planner makes them."""
    bounds = TileSet(tuple(tiles)).bounds
    return bounds.start, bounds.relative_to(bounds.start)


def split_blocks(volume: Box, step):
    """`volume` cut into blocks of `step` voxels (edge blocks smaller)."""
    ranges = [range(a, b, s) for a, b, s in zip(volume.start, volume.stop, step)]
    for x in ranges[0]:
        for y in ranges[1]:
            for z in ranges[2]:
                start = (x, y, z)
                yield Box(start, tuple(min(a + s, b) for a, s, b in zip(start, step, volume.stop)))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("second", [(12, 0, 0), (12.0, 0.0, 0.0)])
def test_linear_equals_nearest_byte_for_byte_at_integer_positions(rule, second):
    tiles, pixels = two_tiles()
    tiles[1] = Tile(1, "b", second, (20, 6, 5))
    reads = {"nearest": [], "linear": []}
    out = {name: fuse(Box((0, 0, 0), (32, 6, 5)), tiles, (0, 0, 0), rule, "uint16",
                      read=recording_reader(pixels, reads[name]), interpolation=name)
           for name in reads}
    assert out["linear"].tobytes() == out["nearest"].tobytes()
    assert reads["linear"] == reads["nearest"]  # the fast path reads no margin


@pytest.mark.parametrize("position", [
    (0.25, 0.5, 0.75), (0.75, 0.25, 0.5), (0.5, 0.75, 0.25),
    (-3.75, -0.5, -10.25), (-0.25, 2.5, -1.5), (5.5, -2.25, 0.0),
])
def test_linear_reproduces_a_linear_ramp_at_fractional_positions(position):
    size = (12, 10, 8)
    tile = Tile(0, "ramp", position, size, type="GRAY32")
    pixels, (a, b, c, d) = ramp(size)
    block = tile.box  # offset 0: output coordinates are stage coordinates
    out = fuse(block, [tile], (0, 0, 0), "average", "float32",
               read=reader({"ramp": pixels}), interpolation="linear")
    # u = i - position per axis, i the stage coordinate of each output voxel
    u = [np.arange(s, e, dtype=np.float64) - p
         for s, e, p in zip(block.start, block.stop, position)]

    def f(ux, uy, uz):
        return a * ux[None, None, :] + b * uy[None, :, None] + c * uz[:, None, None] + d

    inner = (slice(1, -1),) * 3  # |origin - position| <= 0.5: only the faces can lie outside
    np.testing.assert_allclose(out[inner], f(*(v[1:-1] for v in u)), rtol=0, atol=1e-4)
    # a voxel whose centre lies beyond the tile's outer pixel centres (u < 0 or u > n - 1
    # on some axis) is not reached: 0, the fill value, as for a view placed by an affine
    x, y, z = [(v >= 0) & (v <= n - 1) for v, n in zip(u, size)]
    reached = z[:, None, None] & y[None, :, None] & x[None, None, :]
    assert not reached.all()   # every position here has a fraction on some axis
    np.testing.assert_allclose(out, np.where(reached, f(*u), 0), rtol=0, atol=1e-4)


def centroid(volume: np.ndarray, box: Box) -> np.ndarray:
    """Intensity centroid (x, y, z) of a z, y, x array whose voxel 0 sits at box.start."""
    zyx = np.indices(volume.shape).reshape(3, -1).astype(np.float64)
    w = volume.reshape(-1).astype(np.float64)
    return (zyx @ w / w.sum())[::-1] + np.array(box.start)


@pytest.mark.parametrize("shift", [(0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (-0.5, 0.5, -0.5)])
def test_half_voxel_shift_moves_a_gaussian_blob_by_half_a_voxel(shift):
    size = (24, 22, 20)
    z, y, x = np.indices(tuple(reversed(size)), dtype=np.float64)
    blob = (1000 * np.exp(-((x - 11.3) ** 2 + (y - 10.6) ** 2 + (z - 9.8) ** 2) / (2 * 2.5 ** 2)))
    pixels = {"blob": blob.astype(np.float32)}
    centres = []
    for position in [(0.0, 0.0, 0.0), shift]:
        tile = Tile(0, "blob", position, size, type="GRAY32")
        out = fuse(tile.box, [tile], (0, 0, 0), "max", "float32", read=reader(pixels),
                   interpolation="linear")
        centres.append(centroid(out, tile.box))
    np.testing.assert_allclose(centres[1] - centres[0], shift, atol=0.02)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("step", [(5, 4, 3), (9, 7, 2), (1, 13, 4)])
def test_block_decomposition_changes_no_voxel(rule, step):
    tiles, pixels = scattered_tiles()
    offset, volume = output_volume(tiles)
    whole = fuse(volume, tiles, offset, rule, "uint16", read=reader(pixels), interpolation="linear")
    stitched = np.zeros_like(whole)
    for block in split_blocks(volume, step):
        stitched[block.slices_zyx()] = fuse(block, tiles, offset, rule, "uint16",
                                             read=reader(pixels), interpolation="linear")
    np.testing.assert_array_equal(stitched, whole)
    assert not np.array_equal(whole, fuse(volume, tiles, offset, rule, "uint16",
                                          read=reader(pixels)))  # the shift did take effect


def test_a_block_reads_its_overlap_plus_at_most_one_voxel_per_side():
    tiles, pixels = scattered_tiles()
    offset, volume = output_volume(tiles)
    read_voxels = 0
    for block in split_blocks(volume, (6, 5, 4)):
        log = []
        fuse(block, tiles, offset, "linear", "uint16", read=recording_reader(pixels, log),
             interpolation="linear")
        for index, region in log:
            placed = tiles[index].box.relative_to(offset)
            overlap = placed.intersect(block).relative_to(placed.start)
            assert all(r >= o - 1 for r, o in zip(region.start, overlap.start)), (block, region)
            assert all(r <= o + 1 for r, o in zip(region.stop, overlap.stop)), (block, region)
            read_voxels += region.size
        assert len(log) == len({i for i, _ in log})  # one read per tile
    assert read_voxels > 0


def test_unknown_interpolation_is_refused_naming_the_valid_ones():
    tiles, pixels = two_tiles()
    with pytest.raises(ValueError, match="cubic.*nearest, linear"):
        fuse(Box((0, 0, 0), (32, 6, 5)), tiles, (0, 0, 0), "max", "uint16",
             read=reader(pixels), interpolation="cubic")
    assert INTERPOLATIONS == ("nearest", "linear")


def test_cells_agree_with_voxel_masks():
    """The cells fusion cuts a block into, against painting every box into its own mask,
    on random boxes that leave gaps, touch and overlap: the cells fill the block exactly
    once, each cell's members are exactly the boxes holding all of its voxels and none of
    the others hold any of them, and every cell has a member exactly when the boxes
    cover the block (what lets fusion skip zeroing it)."""
    rng = np.random.default_rng(7)
    block = Box((2, 1, 0), (12, 9, 6))
    inside = (slice(2, 12), slice(1, 9), slice(0, 6))
    results = set()
    for _ in range(400):
        boxes = []
        if rng.random() < 0.5:   # two halves of the block, one maybe a voxel short
            cut, short = int(rng.integers(3, 12)), int(rng.integers(0, 2))
            boxes += [Box((2, 1, 0), (cut, 9, 6 - short)), Box((cut, 1, 0), (12, 9, 6))]
        for _ in range(int(rng.integers(0, 5))):
            start = rng.integers(0, 12, 3)
            boxes.append(Box(tuple(int(v) for v in start), tuple(int(v) for v in start + rng.integers(1, 10, 3))))
        masks = np.zeros((len(boxes), 14, 14, 14), bool)
        for n, b in enumerate(boxes):
            masks[n, b.start[0]:b.stop[0], b.start[1]:b.stop[1], b.start[2]:b.stop[2]] = True
        painted = np.zeros((14, 14, 14), int)
        cells = list(fusion._cells(block, boxes))
        for cell, members in cells:
            at = tuple(slice(a, b) for a, b in zip(cell.start, cell.stop))
            painted[at] += 1
            assert members == [n for n in range(len(boxes)) if masks[n][at].all()], (boxes, cell)
            assert not any(masks[n][at].any() for n in range(len(boxes)) if n not in members)
        assert painted[inside].min() == painted[inside].max() == 1 and painted.sum() == int(np.prod(block.shape))
        expected = bool(masks.any(axis=0)[inside].all())
        assert all(members for _, members in cells) == expected, (boxes, expected)
        results.add(expected)
    assert results == {True, False}   # both answers were put to the test


def brute_linear(tiles, pixels, volume: Box, dtype) -> np.ndarray:
    """Linear blending written out voxel-wise in numpy float32, in tile-index order: per
    tile w = (wz * wy) * wx with w_axis = min(i + 0.5, n - i - 0.5) over the tile's own
    voxel index i; value = sum of w * pixel, weight = sum of w; out = clip(rint(value /
    weight)), 0 where no tile."""
    shape = tuple(reversed(volume.shape))
    value, weight = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for tile in sorted(tiles, key=lambda t: t.index):
        lo = [int(p) - s for p, s in zip(tile.position, volume.start)]
        axes = []
        for n in tile.size:
            i = np.arange(n, dtype=np.float32) + np.float32(0.5)
            axes.append(np.minimum(i, np.float32(n) - i))
        wx, wy, wz = axes
        w = (wz[:, None, None] * wy[None, :, None]) * wx[None, None, :]
        at = tuple(slice(a, a + n) for a, n in zip(reversed(lo), reversed(tile.size)))
        weight[at] += w
        value[at] += w * pixels[tile.path].astype(np.float32)
    np.divide(value, weight, out=value, where=weight > 0)
    info = np.iinfo(dtype)
    return np.clip(np.rint(value), info.min, info.max).astype(dtype)


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
@pytest.mark.parametrize("tile_type, dtype", [("GRAY16", "uint16"), ("GRAY8", "uint8"),
                                               ("GRAY16", "uint8"), ("GRAY16", "int16")])
def test_linear_blending_of_whole_voxel_tiles_matches_a_brute_force_reference(
        tile_type, dtype, compiled, monkeypatch):
    """Overlapping tiles at whole-voxel positions (the copy path), into outputs that fit and
    that clip: every block decomposition gives the reference's bytes, with the zones tiles
    share blended by numpy (small blocks) and by the compiled loop (`blend_kernel`, which
    large blocks take; here forced by a zero size threshold)."""
    calls = count_compiled_blends(monkeypatch, compiled)
    rng = np.random.default_rng(11)
    top = 255 if tile_type == "GRAY8" else 4000
    positions = [(0, 0, 0), (11, 1, 0), (2, 9, 1), (12, 8, 2), (6, 4, 5)]
    tiles = [Tile(i, f"t{i}", p, (16, 13, 7), (1.0, 1.0, 1.0), tile_type) for i, p in enumerate(positions)]
    pixels = {t.path: rng.integers(0, top, (7, 13, 16)).astype(t.dtype) for t in tiles}
    offset, volume = output_volume(tiles)
    expected = brute_linear(tiles, pixels, TileSet(tuple(tiles)).bounds, dtype)
    for step in [(28, 22, 12), (5, 4, 3), (9, 7, 12)]:
        got = np.zeros_like(expected)
        for block in split_blocks(volume, step):
            got[block.slices_zyx()] = fuse(block, tiles, offset, "linear", dtype, read=reader(pixels))
        assert got.tobytes() == expected.tobytes(), step
    assert (calls[0] > 0) == compiled   # the path named in the test id is the one tested


@pytest.mark.parametrize("variant", ["mixed types", "big-endian reads", "strided reads"])
def test_linear_blending_of_reads_the_compiled_loop_cannot_take_matches_the_reference(
        variant, monkeypatch):
    """8- and 16-bit tiles together, reads in big-endian order and reads whose rows are not
    contiguous go to numpy even where the compiled loop would otherwise be used, with the
    reference's bytes."""
    calls = count_compiled_blends(monkeypatch, True)
    rng = np.random.default_rng(5)
    positions = [(0, 0, 0), (11, 1, 0), (2, 9, 1)]
    types = ["GRAY8", "GRAY16", "GRAY16"] if variant == "mixed types" else ["GRAY16"] * 3
    tiles = [Tile(i, f"t{i}", p, (16, 13, 7), (1.0, 1.0, 1.0), t)
             for i, (p, t) in enumerate(zip(positions, types))]
    pixels = {t.path: rng.integers(0, 250, (7, 13, 16)).astype(t.dtype) for t in tiles}
    read = reader(pixels)
    if variant == "big-endian reads":
        read = reader({k: v.astype(">u2") for k, v in pixels.items()})
    if variant == "strided reads":
        wide = {k: np.repeat(v, 2, axis=2) for k, v in pixels.items()}   # every other x is the tile

        def read(tile, region):
            box = region.slices_zyx()
            return wide[tile.path][box[0], box[1], slice(2 * region.start[0], 2 * region.stop[0], 2)]
    offset, volume = output_volume(tiles)
    expected = brute_linear(tiles, pixels, TileSet(tuple(tiles)).bounds, "uint16")
    got = fuse(volume, tiles, offset, "linear", "uint16", read=read)
    assert got.tobytes() == expected.tobytes()
    assert calls[0] == 0


def count_compiled_blends(monkeypatch, compiled: bool) -> list[int]:
    """Make blocks of any size eligible for the compiled loops when `compiled` (the size
    threshold that keeps numba out of small jobs set to 0), and count the compiled blends."""
    calls = [0]
    if compiled:
        monkeypatch.setattr(fusion, "MIN_BYTES", 0)
        monkeypatch.setattr(copying, "MIN_BYTES", 0)
    real = fusion._blend_linear_compiled

    def counted(*args):
        calls[0] += 1
        real(*args)
    monkeypatch.setattr(fusion, "_blend_linear_compiled", counted)
    return calls


def brute_rule(tiles, pixels, volume: Box, rule: str, dtype) -> np.ndarray:
    """Every rule written out voxel-wise over `volume` from tiles at whole-voxel positions:
    per voxel, the tiles covering it in index order; max → their largest value, first →
    the lowest index's, average → float32 sum / count, closest → the tile with the largest
    float32 1 / (1 + d²) to its centre (d in float64; ties: lowest index); linear →
    `brute_linear`. Rounded half to even and clipped to `dtype`; 0 where no tile."""
    if rule == "linear":   # over a box holding every tile, then cut to `volume`
        bounds = TileSet(tuple(tiles)).bounds
        whole = Box(tuple(map(min, bounds.start, volume.start)), tuple(map(max, bounds.stop, volume.stop)))
        return brute_linear(tiles, pixels, whole, dtype)[volume.relative_to(whole.start).slices_zyx()]
    shape = tuple(reversed(volume.shape))
    z, y, x = np.meshgrid(*(np.arange(a, b) for a, b in zip(reversed(volume.start), reversed(volume.stop))),
                          indexing="ij")
    values, covering, nearness = [], [], []
    for tile in sorted(tiles, key=lambda t: t.index):
        lo = [int(p) for p in tile.position]
        inside = ((x >= lo[0]) & (x < lo[0] + tile.size[0]) & (y >= lo[1]) & (y < lo[1] + tile.size[1])
                  & (z >= lo[2]) & (z < lo[2] + tile.size[2]))
        value = np.zeros(shape, np.float32)
        value[inside] = pixels[tile.path][z[inside] - lo[2], y[inside] - lo[1], x[inside] - lo[0]]
        centre = [a + (n - 1) / 2 for a, n in zip(lo, tile.size)]
        d2 = (x - centre[0]) ** 2.0 + (y - centre[1]) ** 2.0 + (z - centre[2]) ** 2.0
        values.append(value)
        covering.append(inside)
        nearness.append(np.where(inside, (1.0 / (1.0 + d2)).astype(np.float32), np.float32(0)))
    values, covering, nearness = np.array(values), np.array(covering), np.array(nearness)
    count = covering.sum(axis=0)
    if rule == "max":
        result = np.where(covering, values, -np.inf).max(axis=0)
    elif rule == "first":
        result = np.take_along_axis(values, covering.argmax(axis=0)[None], axis=0)[0]
    elif rule == "average":
        total = np.zeros(shape, np.float32)
        for v in values:   # in index order, in float32
            total += v
        result = total / np.maximum(count, 1).astype(np.float32)
    else:   # closest
        result = np.take_along_axis(values, nearness.argmax(axis=0)[None], axis=0)[0]
    result = np.where(count > 0, result, 0).astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.rint(result), info.min, info.max).astype(dtype)


@st.composite
def whole_voxel_layouts(draw):
    """1-5 tiles of 8- or 16-bit pixels at whole-voxel positions, overlapping or not, and a
    block somewhere over them."""
    count = draw(st.integers(1, 5))
    kinds = draw(st.sampled_from(["GRAY8", "GRAY16", "mixed"]))
    tiles = []
    for i in range(count):
        kind = draw(st.sampled_from(["GRAY8", "GRAY16"])) if kinds == "mixed" else kinds
        tiles.append(Tile(i, f"t{i}", draw(st.tuples(*[st.integers(0, 10)] * 3)),
                          draw(st.tuples(*[st.integers(3, 12)] * 3)), (1.0, 1.0, 1.0), kind))
    start = draw(st.tuples(*[st.integers(0, 12)] * 3))
    size = draw(st.tuples(*[st.integers(1, 14)] * 3))
    return tiles, Box(start, tuple(a + n for a, n in zip(start, size)))


# each rule its own case: drawn at random, a broken rule passed 2 of 8 seeds (trial R)
@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=25, deadline=None)
@given(layout=whole_voxel_layouts(),
       dtype=st.sampled_from(["uint8", "uint16", "int16"]), compiled=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_every_rule_on_whole_voxel_tiles_matches_a_brute_force_reference(layout, rule, dtype,
                                                                         compiled, seed):
    """The copy path (cells one tile covers copied, cells several tiles cover blended; for
    `linear` by the compiled loop when `compiled`) gives the reference's bytes for every
    rule, from read-only (memory-mapped-like) tile pixels."""
    tiles, block = layout
    rng = np.random.default_rng(seed)
    pixels = {t.path: rng.integers(0, 256 if t.dtype.itemsize == 1 else 4000,
                                   tuple(reversed(t.size))).astype(t.dtype) for t in tiles}
    for values in pixels.values():
        values.flags.writeable = False
    with pytest.MonkeyPatch.context() as mp:
        count_compiled_blends(mp, compiled)
        got = fuse(block, tiles, (0, 0, 0), rule, dtype, read=reader(pixels))
    assert got.tobytes() == brute_rule(tiles, pixels, block, rule, dtype).tobytes()


def three_float_tiles(outer):
    """Float tiles 16 wide at x 0, 12.5 and 24: tile 1 rounds to 13 and reaches voxel
    centres 12.5..27.5, so voxel x = 28 is tile 2's alone; tile 1's outer column is
    `outer` (NaN, ±inf: missing data)."""
    rng = np.random.default_rng(0)
    pixels, tiles = {}, []
    for k, x in enumerate((0.0, 12.5, 24.0)):
        values = rng.uniform(100, 200, (4, 8, 16)).astype(np.float32)
        if k == 1:
            values[:, :, 15] = outer
        pixels[f"t{k}"] = values
        tiles.append(Tile(k, f"t{k}", (x, 0.0, 0.0), (16, 8, 4), type="GRAY32"))
    return tiles, pixels


@pytest.mark.parametrize("outer", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("out_type", ["float32", "uint16"])
def test_non_finite_outer_pixels_do_not_reach_past_their_tile(outer, out_type):
    """Trial AI: under linear blending and interpolation a tile's weight past its outer
    pixel centres is 0, but 0 x NaN (or ±inf) is NaN: a NaN column wiped out the next
    voxel, which only the next tile covers (NaN in a float output, 0 in an integer one).
    Judged against tile 2's own pixels, and blending raises no RuntimeWarning."""
    import warnings
    tiles, pixels = three_float_tiles(outer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fuse(Box((0, 0, 0), (40, 8, 4)), tiles, (0, 0, 0), "linear", out_type,
                   read=reader(pixels), interpolation="linear")
    expected = pixels["t2"][:, :, 28 - 24]
    np.testing.assert_array_equal(out[:, :, 28], cast(expected, out_type))
    if np.isnan(outer):   # where tile 1 reaches its NaN column, NaN spreads (documented)
        assert np.isnan(out[:, :, 27]).all() if out_type == "float32" else (out[:, :, 27] == 0).all()


def test_closest_measures_from_a_tile_centre_at_its_sub_voxel_position():
    """Trial AI: tiles 16 wide at x 0 and 12.5 (centres 7.5 and 20.0): voxel 14 is 6.5
    from tile 0's centre and 6.0 from tile 1's, so it is tile 1's; measured from tile 1's
    rounded position (13, centre 20.5) it went to tile 0. Under nearest interpolation a
    tile's pixels sit at its rounded position, and so does its centre."""
    pixels = {"a": np.full((2, 4, 16), 100, np.uint16), "b": np.full((2, 4, 16), 200, np.uint16)}
    tiles = [Tile(0, "a", (0.0, 0.0, 0.0), (16, 4, 2)), Tile(1, "b", (12.5, 0.0, 0.0), (16, 4, 2))]
    block = Box((0, 0, 0), (29, 4, 2))
    linear = fuse(block, tiles, (0, 0, 0), "closest", "uint16", read=reader(pixels),
                  interpolation="linear")
    assert list(linear[0, 0, 10:18]) == [100, 100, 100, 100, 200, 200, 200, 200]
    nearest = fuse(block, tiles, (0, 0, 0), "closest", "uint16", read=reader(pixels))
    assert list(nearest[0, 0, 10:18]) == [100, 100, 100, 100, 100, 200, 200, 200]   # 13 + 7.5
