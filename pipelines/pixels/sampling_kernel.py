"""The numba kernel of `pipelines.pixels.resample`: every output voxel of a box mapped into a view,
tested, interpolated and weighted in one pass (see that module for the method). A module of
its own so that only exports with affine views import numba."""

from __future__ import annotations

import math

from numba import njit

from pipelines.pixels import CACHE_ON_DISK
from pipelines.transforms import TIE


@njit(cache=CACHE_ON_DISK, nogil=True)
def sample(region, m, shift, low, high, border, size, order, data, inside, weight):  # pragma: no cover (compiled)
    """For every voxel o (z, y, x) of `data`: u = m · o + shift (region-local pixels);
    inside = low < u <= high per axis; data = the region interpolated at u (order 1:
    trilinear, order 0: nearest, the pixel at u rounded half down, a u within TIE of a
    pixel edge taken as on it) or 0 outside; weight = the product over axes of the
    distance to the view's nearer border, max(0, min(u + border, size - u - border))
    (order 1) or min(p + border, size - p - border) of the nearest pixel p (order 0, as a
    placed tile's pixels weigh), with border = the region's start + 0.5 (0 outside)."""
    nz, ny, nx = data.shape
    rz, ry, rx = region.shape
    for k in range(nz):
        for j in range(ny):
            bz = m[0, 0] * k + m[0, 1] * j + shift[0]
            by = m[1, 0] * k + m[1, 1] * j + shift[1]
            bx = m[2, 0] * k + m[2, 1] * j + shift[2]
            for i in range(nx):
                uz = bz + m[0, 2] * i
                uy = by + m[1, 2] * i
                ux = bx + m[2, 2] * i
                if (uz <= low[0] or uz > high[0] or uy <= low[1] or uy > high[1]
                        or ux <= low[2] or ux > high[2]):
                    inside[k, j, i] = False
                    data[k, j, i] = 0.0
                    weight[k, j, i] = 0.0
                    continue
                inside[k, j, i] = True
                # clamp into the region (only the nearest-sampling margin reaches past it)
                cz = min(max(uz, 0.0), rz - 1.0)
                cy = min(max(uy, 0.0), ry - 1.0)
                cx = min(max(ux, 0.0), rx - 1.0)
                if order == 0:   # c in [0, r - 1]: so is its pixel, rounded half down
                    pz = math.ceil(cz - 0.5 - TIE)
                    py = math.ceil(cy - 0.5 - TIE)
                    px = math.ceil(cx - 0.5 - TIE)
                    data[k, j, i] = region[pz, py, px]
                    weight[k, j, i] = (min(pz + border[0], size[0] - pz - border[0])
                                       * min(py + border[1], size[1] - py - border[1])
                                       * min(px + border[2], size[2] - px - border[2]))
                    continue
                wz = min(uz + border[0], size[0] - uz - border[0])
                wy = min(uy + border[1], size[1] - uy - border[1])
                wx = min(ux + border[2], size[2] - ux - border[2])
                weight[k, j, i] = max(wz, 0.0) * max(wy, 0.0) * max(wx, 0.0)
                z0, y0, x0 = int(cz), int(cy), int(cx)
                z1, y1, x1 = min(z0 + 1, rz - 1), min(y0 + 1, ry - 1), min(x0 + 1, rx - 1)
                tz, ty, tx = cz - z0, cy - y0, cx - x0
                c00 = region[z0, y0, x0] * (1.0 - tx) + region[z0, y0, x1] * tx
                c01 = region[z0, y1, x0] * (1.0 - tx) + region[z0, y1, x1] * tx
                c10 = region[z1, y0, x0] * (1.0 - tx) + region[z1, y0, x1] * tx
                c11 = region[z1, y1, x0] * (1.0 - tx) + region[z1, y1, x1] * tx
                c0 = c00 * (1.0 - ty) + c01 * ty
                c1 = c10 * (1.0 - ty) + c11 * ty
                data[k, j, i] = c0 * (1.0 - tz) + c1 * tz
