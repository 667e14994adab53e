"""A block that is tile regions side by side, kept as those regions instead of copied.

Where the tiles that reach a block do not overlap inside it and their pixels already
have the output's type, the fused block is nothing but their regions next to each other
(zeros where no tile reaches). Encoding copies every chunk out of the block anyway (N5's
byte order, a contiguous buffer for the codec), so assembling the block first reads and
writes each voxel once more than needed (benchmarks/PROFILE.md, "A block left in its
tiles"). A `Mosaic` holds the regions and answers the slices encoding takes the way an
array would: a view of one region where the slice lies inside it, an assembled copy where
it crosses regions or reaches voxels no tile covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.copying import copy_region


@dataclass(frozen=True, eq=False)
class Mosaic:
    """The voxels of a z, y, x box of `shape`: each piece (`starts[n]`, z, y, x within the
    box; `pieces[n]`, an array of `dtype`) holds its part, pieces do not overlap, and
    voxels of no piece are 0. Read-only: slices may be views of the pieces."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    starts: tuple[tuple[int, int, int], ...]
    pieces: tuple[np.ndarray, ...]

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, key: Sequence[slice]) -> np.ndarray:
        """Region `key` (three slices with steps of 1, as `Box.slices_zyx` gives)."""
        lo, hi = self._bounds(key)
        for start, piece in zip(self.starts, self.pieces):
            if all(s <= a and b <= s + n for a, b, s, n in zip(lo, hi, start, piece.shape)):
                return piece[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))]
        out = np.zeros(tuple(b - a for a, b in zip(lo, hi)), dtype=self.dtype)
        for start, piece in zip(self.starts, self.pieces):
            a = [max(x, s) for x, s in zip(lo, start)]
            b = [min(y, s + n) for y, s, n in zip(hi, start, piece.shape)]
            if all(p < q for p, q in zip(a, b)):
                copy_region(out[tuple(slice(p - x, q - x) for p, q, x in zip(a, b, lo))],
                            piece[tuple(slice(p - s, q - s) for p, q, s in zip(a, b, start))])
        return out

    def assemble(self) -> np.ndarray:
        """The whole box as one array."""
        return self[tuple(slice(0, n) for n in self.shape)]

    def _bounds(self, key: Sequence[slice]) -> tuple[list[int], list[int]]:
        if len(key) != 3 or any(not isinstance(k, slice) or k.step not in (None, 1) for k in key):
            raise TypeError(f"a Mosaic is sliced by three slices with step 1, not {key!r}")
        bounds = [k.indices(n) for k, n in zip(key, self.shape)]
        return [a for a, _, _ in bounds], [max(a, b) for a, b, _ in bounds]


# What encoding accepts as a region's values: an array, or a Mosaic standing for one.
Region = np.ndarray | Mosaic
