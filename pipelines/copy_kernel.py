"""The numba loops of `pipelines.copying`: the rows of one strided 3D region copied into
another, as they are or with each value's bytes reversed. A module of its own so that only
processes copying large regions import numba.

Each side is given as a flat, contiguous run of values (`source`, `target`) and the
distances between its planes and rows, in values: rows that are contiguous slices of a
contiguous 1D array are what lets the compiler vectorise the inner loop (over a strided
3D view it cannot, and the same loop is 3 × slower than numpy's copy)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def copy_rows(source, s_plane, s_row, target, t_plane, t_row, nz, ny, nx):  # pragma: no cover (compiled)
    for z in range(nz):
        for y in range(ny):
            a, b = z * s_plane + y * s_row, z * t_plane + y * t_row
            row, out = source[a:a + nx], target[b:b + nx]
            for x in range(nx):
                out[x] = row[x]


@njit(cache=True, nogil=True)
def swap_rows_16(source, s_plane, s_row, target, t_plane, t_row, nz, ny, nx):  # pragma: no cover (compiled)
    for z in range(nz):
        for y in range(ny):
            a, b = z * s_plane + y * s_row, z * t_plane + y * t_row
            row, out = source[a:a + nx], target[b:b + nx]
            for x in range(nx):
                v = row[x]
                out[x] = (v >> np.uint16(8)) | (v << np.uint16(8))


@njit(cache=True, nogil=True)
def swap_rows_32(source, s_plane, s_row, target, t_plane, t_row, nz, ny, nx):  # pragma: no cover (compiled)
    for z in range(nz):
        for y in range(ny):
            a, b = z * s_plane + y * s_row, z * t_plane + y * t_row
            row, out = source[a:a + nx], target[b:b + nx]
            for x in range(nx):
                v = row[x]
                out[x] = (((v >> np.uint32(24)) & np.uint32(0xFF))
                          | ((v >> np.uint32(8)) & np.uint32(0xFF00))
                          | ((v << np.uint32(8)) & np.uint32(0xFF0000))
                          | (v << np.uint32(24)))


@njit(cache=True, nogil=True)
def swap_rows_64(source, s_plane, s_row, target, t_plane, t_row, nz, ny, nx):  # pragma: no cover (compiled)
    for z in range(nz):
        for y in range(ny):
            a, b = z * s_plane + y * s_row, z * t_plane + y * t_row
            row, out = source[a:a + nx], target[b:b + nx]
            for x in range(nx):
                v = row[x]
                r = np.uint64(0)
                for _ in range(8):
                    r = (r << np.uint64(8)) | (v & np.uint64(0xFF))
                    v = v >> np.uint64(8)
                out[x] = r
