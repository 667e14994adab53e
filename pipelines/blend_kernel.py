"""The numba loop of `fusion`'s linear blending where tiles meet: a box that every one of
m tiles covers, blended in one pass. A module of its own so that only processes blending
large blocks import numba.

For each voxel it does, in float32 and without fast-math, exactly the operations of the
numpy path (`fusion._blend` with `_linear`, then `_cast_owned`) in the same order —
weights and weighted values summed over the tiles in index order from 0, divided, rounded
half to even, clipped, cast — so the bytes are the same. numpy makes about ten passes
over a zone with three zone-sized temporaries; this loop reads each tile once and writes
the output once, keeping one row of sums in cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def blend_linear(sources, s_planes, s_rows, wz, wy, wx, out, o_plane, o_row,
                 nz, ny, nx, low, high):  # pragma: no cover (compiled)
    """out's box = the linear blend of the m `sources` over it.

    Each side is a contiguous 1D run from the box's first voxel with its plane and row
    distances (`copying.row_run`): source t's voxel (k, j, i) is
    sources[t][k · s_planes[t] + j · s_rows[t] + i], out's likewise. Tile t's weight at
    (k, j, i) is (wz[t, k] · wy[t, j]) · wx[t, i]; the result is rounded and clipped to
    [low, high] (float32) and cast to out's integer type.
    """
    value = np.empty(nx, dtype=np.float32)
    weight = np.empty(nx, dtype=np.float32)
    for k in range(nz):
        for j in range(ny):
            value[:] = 0.0
            weight[:] = 0.0
            for t in range(len(sources)):
                a = k * s_planes[t] + j * s_rows[t]
                row = sources[t][a:a + nx]
                wzy = wz[t, k] * wy[t, j]
                wxt = wx[t]
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
