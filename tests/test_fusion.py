"""Fusion rules on known tiles: single-tile voxels are exact, overlaps follow each rule."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.fusion import cast, fuse
from pipelines.geometry import Box
from pipelines.tiles import Tile

RULES = ["max", "average", "linear", "first"]


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


def fused(tiles, pixels, rule, block=Box((0, 0, 0), (32, 6, 5))):
    return fuse(block, tiles, (0, 0, 0), rule, "uint16", read=reader(pixels))


@pytest.mark.parametrize("rule", RULES)
def test_voxels_covered_by_one_tile_equal_that_tile(rule):
    tiles, pixels = two_tiles()
    out = fused(tiles, pixels, rule)
    np.testing.assert_array_equal(out[:, :, :12], pixels["a"][:, :, :12])
    np.testing.assert_array_equal(out[:, :, 20:], pixels["b"][:, :, 8:])


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


@pytest.mark.parametrize("dtype,values,expected", [
    ("int32", [3e9, -3e9, 2147483647.0], [2147483647, -2147483648, 2147483647]),
    ("uint32", [5e9, 4294967295.0, -1.0], [4294967295, 4294967295, 0]),
])
def test_cast_saturates_wide_integer_types(dtype, values, expected):
    np.testing.assert_array_equal(cast(np.array(values, dtype=np.float32), dtype), expected)
