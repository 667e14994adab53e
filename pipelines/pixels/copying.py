"""`copy_region(out, values)`: `out[...] = values` for the large 3D copies on the way from
tiles to stored chunks, in one compiled pass that also converts the byte order;
`copy_columns` does the same into several regions side by side in one pass.

Why (benchmarks/PROFILE.md, "Gathering copies"): the regions copied are strided views —
rows of a few hundred bytes, a KiB or more apart — which numpy copies with per-row
overhead, and whose byte order (N5 is big-endian) it converts in a slower casting loop.
Per 4 MiB chunk of `uint16`: from a 4 GiB in-memory volume numpy copies in 1.07 ms and
swaps in 1.51, the compiled loop 0.76 and 0.84; from a memory-mapped tile 0.69 / 1.28
against 0.58 / 0.67. tensorstore does the same: it swaps while it gathers.

Small copies stay with numpy: importing numba costs a process about 0.2 s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

if TYPE_CHECKING:   # value_range imports this module
    from pipelines.pixels.value_range import ValueRange

MIN_BYTES = 1 << 18   # copies below this go to numpy (numba's import would not pay back)
# Regions one compiled copy fills (`copy_columns` takes more in groups of this many): its
# targets always come as a tuple of this many, padded, so numba compiles it once per type.
MAX_COLUMNS = 8
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def copy_region(out: np.ndarray, values: np.ndarray, seen: ValueRange | None = None) -> None:
    """`out[...] = values` for 3D arrays of one shape and of one type in either byte order:
    the same values, in `out`'s byte order. `seen`, if given, is shown every value copied:
    for unsigned values in native byte order (microscopes' types) within the compiled copy,
    otherwise by a pass of its own."""
    if out.ndim == 3 and out.shape == values.shape and out.nbytes >= MIN_BYTES:
        copy_columns((out,), values, seen)
        return
    out[...] = values   # small, or numpy's own rules (broadcasting, other ranks)
    if seen is not None:
        seen.see(values)


def copy_columns(outs: Sequence[np.ndarray], values: np.ndarray,
                 seen: ValueRange | None = None) -> None:
    """`copy_region` of `values` cut along x into the regions `outs`, which lie side by side:
    `outs[0]` gets the first `outs[0].shape[2]` columns, `outs[1]` the next, and so on; every
    out has `values`' depth and height, and together they are as wide. One pass over whole
    rows of `values` (a row of chunks of a block, each into its own buffer) costs less than
    one pass per out over parts of rows (benchmarks/PROFILE.md, "Whole rows")."""
    widths = [out.shape[2] if out.ndim == 3 else -1 for out in outs]
    if values.ndim != 3 or sum(widths) != values.shape[2] or any(
            out.shape[:2] != values.shape[:2] or w < 0 for out, w in zip(outs, widths)):
        raise ValueError(f"regions of shapes {[out.shape for out in outs]} do not cut "
                         f"{values.shape} along its last axis")
    if len(outs) > MAX_COLUMNS:
        x = 0
        for n in range(0, len(outs), MAX_COLUMNS):
            group = outs[n:n + MAX_COLUMNS]
            width = sum(out.shape[2] for out in group)
            copy_columns(group, values[:, :, x:x + width], seen)
            x += width
        return
    if not (sum(out.nbytes for out in outs) >= MIN_BYTES and _compiled_applies(outs, values)):
        x = 0
        for out, width in zip(outs, widths):
            out[...] = values[:, :, x:x + width]
            x += width
        if seen is not None:
            seen.see(values)
        return
    from pipelines.pixels.copy_kernel import (
        copy_rows,  # numba: only in processes copying large regions
    )

    swap = values.itemsize > 1 and _big_endian(values.dtype) != _big_endian(outs[0].dtype)
    watch = seen is not None and values.dtype.kind == "u" and values.dtype.isnative
    source, s_plane, s_row = _rows(values, writeable=False)
    targets = [_rows(out, writeable=True) for out in outs]
    unused = _rows(np.zeros((1, 1, 1), outs[0].dtype), writeable=True)[0]   # never written
    runs = tuple(t[0] for t in targets) + (unused,) * (MAX_COLUMNS - len(targets))
    kernel: Any = copy_rows   # a numba dispatcher: its signature is the compiled function's
    low, high = kernel(source, s_plane, s_row, runs, len(targets),
                       np.array([t[1] for t in targets], np.int64),
                       np.array([t[2] for t in targets], np.int64), np.array(widths, np.int64),
                       values.shape[0], values.shape[1], swap, watch)
    if seen is not None and watch:
        seen.add(values.dtype.type(low), values.dtype.type(high))
    elif seen is not None:   # signed, float or non-native values: a pass of their own
        seen.see(values)


def _compiled_applies(outs: Sequence[np.ndarray], values: np.ndarray) -> bool:
    """Whether the compiled loop can copy `values` into `outs` (side by side along x, as
    `copy_columns` checks): 3D, one type up to byte order (one byte order among the outs),
    and on every side contiguous rows, rows and planes at positive distances that do not
    overlap (any box of a C-ordered array or memory-mapped file), the outs writeable and
    not sharing memory with `values`."""
    if values.ndim != 3 or 0 in values.shape or values.itemsize not in _UNSIGNED:
        return False
    if not separate_rows(values) or len({_big_endian(out.dtype) for out in outs}) > 1:
        return False
    return all(out.ndim == 3 and out.shape[:2] == values.shape[:2] and 0 not in out.shape
               and out.flags.writeable and separate_rows(out)
               and out.dtype.newbyteorder("=") == values.dtype.newbyteorder("=")
               and not np.may_share_memory(out, values) for out in outs)


def separate_rows(array: np.ndarray) -> bool:
    """Whether a 3D array's rows are contiguous and its rows and planes lie at positive
    distances that do not overlap (any box of a C-ordered array or memory-mapped file):
    what `row_run` needs."""
    size = array.itemsize
    sz, sy, sx = array.strides
    _, ny, nx = array.shape
    return (sx == size and sy % size == 0 and sz % size == 0
            and sy >= size * nx and sz >= sy * ny)


def row_run(array: np.ndarray, writeable: bool) -> tuple[np.ndarray, int, int]:
    """A 3D array with `separate_rows` as one contiguous 1D run of its values from its
    first to its last (the gaps between rows included), and its plane and row distances in
    values: the shape that lets numba vectorise a loop over each row."""
    size = array.itemsize
    plane, row = array.strides[0] // size, array.strides[1] // size
    nz, ny, nx = array.shape
    run = as_strided(array, shape=((nz - 1) * plane + (ny - 1) * row + nx,), strides=(size,),
                     writeable=writeable)
    return run, plane, row


def _rows(array: np.ndarray, writeable: bool) -> tuple[np.ndarray, int, int]:
    """`row_run` as unsigned values of the same width (byte order is the kernel's job)."""
    run, plane, row = row_run(array, writeable)
    return run.view(_UNSIGNED[array.itemsize]), plane, row


def _big_endian(dtype: np.dtype) -> bool:
    return dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
