"""Resampling a tile at a sub-voxel position (`resample.sample_linear`): the values of
trilinear interpolation, computed slab by slab in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pipelines.geometry import Box
from pipelines.pixels import resample
from pipelines.tiles import Tile


def reader(pixels: np.ndarray):
    def read(tile: Tile, box: Box) -> np.ndarray:
        (x0, y0, z0), (x1, y1, z1) = box.start, box.stop
        return pixels[z0:z1, y0:y1, x0:x1].copy()
    return read


def trilinear(pixels: np.ndarray, position, region: Box) -> np.ndarray:
    """Brute force, float64: each output voxel i (relative to the tile's rounded origin)
    samples the tile at u = origin + i - position, clipped to its pixels."""
    origin = [int(np.floor(p + 0.5)) for p in position]
    grids = []
    for axis, (a, b) in enumerate(zip(region.start, region.stop)):
        n = pixels.shape[2 - axis]
        u = np.clip(np.arange(origin[axis] + a, origin[axis] + b) - position[axis], 0, n - 1)
        k = np.floor(u).astype(int)
        grids.append((k, np.minimum(k + 1, n - 1), u - k))
    (kx, kx1, tx), (ky, ky1, ty), (kz, kz1, tz) = grids
    p = pixels.astype(np.float64)
    p = p[:, :, kx] * (1 - tx) + p[:, :, kx1] * tx
    p = p[:, ky, :] * (1 - ty)[:, None] + p[:, ky1, :] * ty[:, None]
    return p[kz] * (1 - tz)[:, None, None] + p[kz1] * tz[:, None, None]


@pytest.mark.parametrize("slab_bytes", [1, 4096, resample.SLAB_BYTES])
@pytest.mark.parametrize("position", [(3.5, 0.25, 1.75), (-2.3, 4.0, 0.5), (0.0, 0.0, 2.6),
                                      (3.5, 0.25, 2.0)])   # z not moving: its planes as read
def test_slabs_give_trilinear_values(monkeypatch, slab_bytes, position):
    """Whatever the slab size (one plane, a few, the whole region), the values are those
    of trilinear interpolation, and slabs of other sizes give the same bytes."""
    size = (23, 17, 11)
    pixels = np.random.default_rng(3).integers(0, 60000, size[::-1], dtype=np.uint16)
    tile = Tile(0, "t", position, size)
    region = Box((2, 1, 1), (21, 16, 10))
    monkeypatch.setattr(resample, "SLAB_BYTES", slab_bytes)
    out = resample.sample_linear(tile, region, reader(pixels))
    np.testing.assert_allclose(out, trilinear(pixels, position, region), rtol=1e-6, atol=0.02)
    monkeypatch.setattr(resample, "SLAB_BYTES", 1 << 30)
    assert out.tobytes() == resample.sample_linear(tile, region, reader(pixels)).tobytes()


def test_resampling_holds_little_more_than_its_result():
    """Trial AL: interpolating a 256 x 256 x 128 region of uint16 at once peaked at 12 bytes
    per voxel (nearest: 6: the read and its float32 result), above the task's planned
    memory; slab by slab it stays within a byte of nearest's."""
    size = (256, 256, 128)
    pixels = np.random.default_rng(0).integers(0, 4000, size[::-1], dtype=np.uint16)
    region = Box((0, 0, 0), (255, 255, 127))
    peaks = {}
    for position in [(0.0, 0.0, 0.0), (10.5, 0.3, 0.7)]:
        tracemalloc.start()
        out = resample.sample_linear(Tile(0, "t", position, size), region, reader(pixels))
        peaks[position] = tracemalloc.get_traced_memory()[1] / out.size
        tracemalloc.stop()
    assert peaks[(0.0, 0.0, 0.0)] == pytest.approx(6, abs=0.1)
    assert peaks[(10.5, 0.3, 0.7)] < 7.0, peaks
