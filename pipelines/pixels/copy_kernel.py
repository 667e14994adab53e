"""The numba loop of `pipelines.pixels.copying`: the rows of one strided 3D region copied into
one or more others side by side, as they are or with each value's bytes reversed. A
module of its own so that only processes copying large regions import numba.

Each side is given as a flat, contiguous run of values (`source`, each target) and the
distances between its planes and rows, in values: rows that are contiguous slices of a
contiguous 1D array are what lets the compiler vectorise the inner loop (over a strided
3D view it cannot, and the same loop is 3 × slower than numpy's copy)."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from pipelines.pixels import CACHE_ON_DISK


def reversed_bytes(v):  # pragma: no cover (replaced in compiled code by the overload below)
    """`v` (an unsigned integer of 1, 2, 4 or 8 bytes) with its bytes in reverse order."""
    raise NotImplementedError("only callable from compiled code")


@overload(reversed_bytes, inline="always")
def _reversed_bytes(v):
    # One expression per width, which the compiler turns into one byte-swap instruction;
    # numba computes in wider integers, so each result is cut back to its width.
    if v == types.uint8:   # one byte: nothing to reverse (typed, though never swapped)
        return lambda v: v
    if v == types.uint16:
        return lambda v: np.uint16((v >> np.uint16(8)) | (v << np.uint16(8)))
    if v == types.uint32:
        return lambda v: np.uint32(((v >> np.uint32(24)) & np.uint32(0xFF))
                                   | ((v >> np.uint32(8)) & np.uint32(0xFF00))
                                   | ((v << np.uint32(8)) & np.uint32(0xFF0000))
                                   | (v << np.uint32(24)))
    if v == types.uint64:
        def swap64(v):
            low, high = np.uint32(v & np.uint64(0xFFFFFFFF)), np.uint32(v >> np.uint64(32))
            return (np.uint64(reversed_bytes(low)) << np.uint64(32)) | np.uint64(reversed_bytes(high))
        return swap64
    return None


@njit(cache=CACHE_ON_DISK, nogil=True)
def copy_rows(source, s_plane, s_row, targets, count, t_planes, t_rows, widths, nz, ny, swap,
              watch):  # pragma: no cover (compiled)
    """Each source row cut into runs of widths[0], widths[1], ... values, side by side: run
    j goes to the same row of targets[j] (the first `count` targets; the tuple may be
    longer), each value's bytes reversed when `swap`. Returns
    the smallest and largest source value when `watch` (unsigned sources in native byte
    order; otherwise the first value twice). One source row after another, however many
    targets: partial rows of a wide array cost up to 2.6 × as much memory traffic per value
    as whole ones (benchmarks/PROFILE.md, "Whole rows"). Comparing each value while it is in
    a register costs far less than a pass of its own over the block (kept in the values'
    own type: widened, the loop no longer vectorises)."""
    low = high = source[0]
    for z in range(nz):
        for y in range(ny):
            a = z * s_plane + y * s_row
            for j in range(count):
                nx = widths[j]
                b = z * t_planes[j] + y * t_rows[j]
                row, out = source[a:a + nx], targets[j][b:b + nx]
                a += nx
                if swap and watch:
                    for x in range(nx):
                        v = row[x]
                        out[x] = reversed_bytes(v)
                        low, high = min(low, v), max(high, v)
                elif swap:
                    for x in range(nx):
                        out[x] = reversed_bytes(row[x])
                elif watch:
                    for x in range(nx):
                        v = row[x]
                        out[x] = v
                        low, high = min(low, v), max(high, v)
                else:
                    for x in range(nx):
                        out[x] = row[x]
    return low, high
