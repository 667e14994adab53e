"""The numba loop of `fusion`'s linear blending where tiles meet: a box that every one of
m tiles covers, blended in one pass. A module of its own so that only processes blending
large blocks import numba.

For each voxel it does, in float32 and without fast-math, exactly the operations of the
numpy path (`fusion._blend` with `_linear`, then `_cast_owned`) in the same order —
weights and weighted values summed over the tiles in index order from 0, divided, rounded
half to even, clipped, cast — so the bytes are the same. numpy makes about ten passes
over a zone with three zone-sized temporaries; this loop reads each tile once and writes
the output once, keeping one row of sums in cache — or, for a zone two tiles share (most
of them), both sums in registers (benchmarks/PROFILE.md, "Where tiles meet").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipelines.pixels import CACHE_ON_DISK


@njit(cache=CACHE_ON_DISK, nogil=True)
def blend_linear(sources, s_planes, s_rows, wz, wy, wx, out, o_plane, o_row,
                 nz, ny, nx, low, high):  # pragma: no cover (compiled)
    """out's box = the linear blend of the m `sources` over it.

    Each side is a contiguous 1D run from the box's first voxel with its plane and row
    distances (`copying.row_run`): source t's voxel (k, j, i) is
    sources[t][k · s_planes[t] + j · s_rows[t] + i], out's likewise. Tile t's weight at
    (k, j, i) is (wz[t, k] · wy[t, j]) · wx[t, i]; the result is rounded and clipped to
    [low, high] (float32) and cast to out's integer type.
    """
    if len(sources) == 2:   # most shared zones (tiles meeting face to face): one pass
        _blend_two(sources, s_planes, s_rows, wz, wy, wx, out, o_plane, o_row, nz, ny, nx,
                   low, high)
        return
    value = np.empty(nx, dtype=np.float32)
    weight = np.empty(nx, dtype=np.float32)
    for k in range(nz):
        for j in range(ny):
            for t in range(len(sources)):
                a = k * s_planes[t] + j * s_rows[t]
                row = sources[t][a:a + nx]
                wzy = wz[t, k] * wy[t, j]
                wxt = wx[t]
                if t == 0:   # 0 + x is x: the first tile's terms start the sums
                    for i in range(nx):
                        w = wzy * wxt[i]
                        weight[i] = w
                        value[i] = w * np.float32(row[i])
                    continue
                for i in range(nx):
                    w = wzy * wxt[i]
                    weight[i] += w
                    value[i] += w * np.float32(row[i])
            b = k * o_plane + j * o_row
            target = out[b:b + nx]
            for i in range(nx):
                v = value[i]
                if weight[i] > 0:
                    v = v / weight[i]
                target[i] = min(max(np.rint(v), low), high)


@njit(cache=CACHE_ON_DISK, nogil=True, inline="always")
def _blend_two(sources, s_planes, s_rows, wz, wy, wx, out, o_plane, o_row, nz, ny, nx,
               low, high):  # pragma: no cover (compiled)
    """`blend_linear` of two sources, each voxel's sums kept in registers instead of in
    rows of sums: the same operations in the same order (w0 + w1, w0·v0 + w1·v1)."""
    first, second = sources
    wx0, wx1 = wx[0], wx[1]
    for k in range(nz):
        for j in range(ny):
            a0 = k * s_planes[0] + j * s_rows[0]
            a1 = k * s_planes[1] + j * s_rows[1]
            row0, row1 = first[a0:a0 + nx], second[a1:a1 + nx]
            wzy0, wzy1 = wz[0, k] * wy[0, j], wz[1, k] * wy[1, j]
            b = k * o_plane + j * o_row
            target = out[b:b + nx]
            for i in range(nx):
                w0 = wzy0 * wx0[i]
                w1 = wzy1 * wx1[i]
                weight = w0 + w1
                v = w0 * np.float32(row0[i]) + w1 * np.float32(row1[i])
                if weight > 0:
                    v = v / weight
                target[i] = min(max(np.rint(v), low), high)
