"""The numba loop of `value_range.value_range`: an integer array's minimum and maximum
in one pass over its rows. A module of its own so that only processes with large blocks
import numba."""

from __future__ import annotations

from numba import njit

from pipelines.pixels import CACHE_ON_DISK


@njit(cache=CACHE_ON_DISK, nogil=True)
def row_range(run, plane, row, nz, ny, nx):  # pragma: no cover (compiled)
    """(min, max) of the rows of a 3D integer array given as a contiguous run with its
    plane and row distances (`copying.row_run`)."""
    low = high = run[0]
    for k in range(nz):
        for j in range(ny):
            a = k * plane + j * row
            values = run[a:a + nx]
            for i in range(nx):
                v = values[i]
                if v < low:
                    low = v
                if v > high:
                    high = v
    return low, high
