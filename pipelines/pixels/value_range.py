"""The smallest and largest value of a block, which the metadata's display window of each
channel is made from (`BlockReceipt.ranges`).

Two ways to get them, both exact and equal to numpy's `min()` and `max()` (of floats, of
their finite values: NaN and ±inf make no display window):
- `value_range(data)`: one compiled pass over a large integer block
  (`pipelines.pixels.range_kernel`), where numpy makes two: 0.23 against 0.47 ms per 4 MiB of
  `uint16` (benchmarks/PROFILE.md);
- `ValueRange`, handed to the copies that prepare each chunk for its codec
  (`copying.copy_region`): the compiled copy compares each value as it moves it, so the
  block is not read once more for its range. Per 4 MiB chunk copied out of a fused block
  that adds ≈ 0.07 ms to the copy, against ≈ 0.28 ms for a pass of its own (PROFILE.md,
  "A block's range while it is copied").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.pixels.copying import MIN_BYTES, row_run, separate_rows


def value_range(data: np.ndarray) -> tuple[Any, Any]:
    """(data.min(), data.max()) of a non-empty block, as numpy scalars of its type. For a
    large integer block in native byte order one compiled pass instead of numpy's two.
    Of floats, the finite values' (`_finite_range`)."""
    if data.dtype.kind == "f":
        return _finite_range(data)
    if (data.dtype.kind not in "iu" or not data.dtype.isnative or data.ndim != 3
            or data.nbytes < MIN_BYTES or not separate_rows(data)):
        return data.min(), data.max()
    from pipelines.pixels.range_kernel import row_range  # numba: only for large blocks

    run, plane, row = row_run(data, writeable=False)
    kernel: Any = row_range   # a numba dispatcher: its signature is the compiled function's
    low, high = kernel(run, plane, row, *data.shape)
    return data.dtype.type(low), data.dtype.type(high)


def _finite_range(data: np.ndarray) -> tuple[Any, Any]:
    """(min, max) of the finite values of a float array; (NaN, NaN) when it holds none.
    NaN and ±inf make no display window, and ±inf in one made the metadata that is not
    JSON (trial N: `"max": Infinity` in zarr.json, which z5py and browsers refuse). fmin
    and fmax skip NaN in one pass each; only an infinity costs a pass more."""
    low, high = np.fmin.reduce(data, axis=None), np.fmax.reduce(data, axis=None)
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return data.dtype.type(np.nan), data.dtype.type(np.nan)
    return finite.min(), finite.max()


class ValueRange:
    """The smallest and largest of all values shown to it, over several arrays of one type:
    a block's range gathered from the chunks it is encoded as (every voxel of the block lies
    in exactly one of them)."""

    def __init__(self) -> None:
        self.low: Any = None
        self.high: Any = None

    def add(self, low, high) -> None:
        """Include a range already known, e.g. (fill, fill) for a chunk of fill values."""
        if self.low is None:
            self.low, self.high = low, high
        else:   # fmin and fmax skip NaN: the range of an array of NaN only (`_finite_range`)
            self.low, self.high = np.fmin(self.low, low), np.fmax(self.high, high)

    def see(self, values: np.ndarray) -> None:
        """Include every value of a non-empty array."""
        self.add(*value_range(values))

    def numbers(self) -> tuple[float | int, float | int]:
        """(min, max) as Python numbers; an error if nothing was shown."""
        if self.low is None:
            raise ValueError("no values were seen")
        return self.low.item(), self.high.item()
