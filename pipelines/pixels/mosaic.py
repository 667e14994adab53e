"""A block that is tile regions and blended zones, kept as those pieces instead of copied.

Where the tiles that reach a block have the output's type and need no resampling, the
fused block is their regions next to each other (zeros where no tile reaches), with the
zones two or more tiles share blended. Encoding copies every chunk out of the block anyway
(N5's byte order, a contiguous buffer for the codec), so assembling the block first reads
and writes each voxel once more than needed (benchmarks/PROFILE.md, "A block left in its
tiles", "Where tiles meet"). A `Mosaic` holds the pieces and answers the slices encoding
takes the way an array would, without copying: a view of one piece where the slice lies
inside it, otherwise a Mosaic of the pieces' parts; `copy_out` then copies each part
straight into the chunks' buffers and `holds_only` tells fill chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.pixels.copying import copy_columns, copy_region
from pipelines.pixels.value_range import ValueRange


@dataclass(frozen=True, eq=False)
class Mosaic:
    """The voxels of a z, y, x box of `shape`: each piece (`starts[n]`, z, y, x within the
    box; `pieces[n]`, an array of `dtype`) holds its part, pieces do not overlap, and
    voxels of no piece are 0. Read-only (its pieces are memory-mapped tiles and arrays
    made read-only): slices may be views of the pieces."""

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

    def __getitem__(self, key: Sequence[slice]) -> Region:
        """Region `key` (three slices with steps of 1, as `Box.slices_zyx` gives): a view of
        one piece where the region lies inside it, else a Mosaic of the views of the pieces'
        parts inside it. Nothing is copied."""
        lo, hi = self._bounds(key)
        starts: list[tuple[int, int, int]] = []
        parts = []
        for start, piece in zip(self.starts, self.pieces):
            a = [max(x, s) for x, s in zip(lo, start)]
            b = [min(y, s + n) for y, s, n in zip(hi, start, piece.shape)]
            if all(p < q for p, q in zip(a, b)):
                part = piece[tuple(slice(p - s, q - s) for p, q, s in zip(a, b, start))]
                if a == lo and b == hi:
                    return part
                starts.append((a[0] - lo[0], a[1] - lo[1], a[2] - lo[2]))
                parts.append(part)
        shape = (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])
        return Mosaic(shape, self.dtype, tuple(starts), tuple(parts))

    def assemble(self) -> np.ndarray:
        """The whole box as one array."""
        out = (np.empty if self._covered() else np.zeros)(self.shape, dtype=self.dtype)
        for start, piece in zip(self.starts, self.pieces):
            copy_region(out[tuple(slice(a, a + n) for a, n in zip(start, piece.shape))], piece)
        return out

    def holds_only(self, value) -> bool:
        """Whether every voxel is `value` (`all_equal`; voxels of no piece are 0)."""
        if not self._covered() and value != 0:
            return False
        if any(piece.size and piece.flat[0] != value for piece in self.pieces):
            return False   # decided by a first voxel, before any piece is scanned
        return all(all_equal(piece, value) for piece in self.pieces)

    def copy_into(self, outs: Sequence[np.ndarray], seen: ValueRange | None = None) -> None:
        """`copying.copy_columns(outs, self.assemble(), seen)` without assembling: each
        piece goes straight into the parts of `outs` (regions side by side along x, as wide
        together as the box) it covers, in one compiled pass of whole piece rows."""
        if any(out.ndim != 3 or out.shape[:2] != self.shape[:2] for out in outs) or \
                sum(out.shape[2] for out in outs) != self.shape[2]:
            raise ValueError(f"regions of shapes {[o.shape for o in outs]} do not cut "
                             f"{self.shape} along its last axis")
        edges = [0]
        for out in outs:
            edges.append(edges[-1] + out.shape[2])
        if not self._covered():
            for out in outs:
                out.fill(0)
            if seen is not None and self.size:
                seen.add(self.dtype.type(0), self.dtype.type(0))
        for (z, y, x), piece in zip(self.starts, self.pieces):
            nz, ny, nx = piece.shape
            targets = [out[z:z + nz, y:y + ny, max(x, lo) - lo:min(x + nx, hi) - lo]
                       for out, lo, hi in zip(outs, edges, edges[1:]) if max(x, lo) < min(x + nx, hi)]
            copy_columns(targets, piece, seen)

    def _covered(self) -> bool:
        """Whether the pieces (which do not overlap) cover every voxel."""
        return sum(piece.size for piece in self.pieces) == self.size

    def _bounds(self, key: Sequence[slice]) -> tuple[list[int], list[int]]:
        if len(key) != 3 or any(not isinstance(k, slice) or k.step not in (None, 1) for k in key):
            raise TypeError(f"a Mosaic is sliced by three slices with step 1, not {key!r}")
        bounds = [k.indices(n) for k, n in zip(key, self.shape)]
        return [a for a, _, _ in bounds], [max(a, b) for a, b, _ in bounds]


# What encoding accepts as a region's values: an array, or a Mosaic standing for one.
Region = np.ndarray | Mosaic


def all_equal(values: np.ndarray, value) -> bool:
    """Whether every element of `values` is `value`; a float −0.0 is not 0 (trial AB: a
    chunk of −0.0 was left unwritten, so readers gave +0.0; zarr-python and tensorstore
    write it)."""
    if values.size and values.flat[0] != value:
        return False   # most regions of real data are decided by their first voxel
    if value != 0:
        return bool(np.all(values == value))
    if values.dtype.kind == "f":   # +0.0 is the float whose bits are all zero
        values = values.view(np.dtype(f"u{values.dtype.itemsize}"))
    # any() needs no temporary array, and 0 is the usual value asked about (the fill value)
    return not values.any()


def copy_out(outs: Sequence[np.ndarray], values: Region, seen: ValueRange | None = None) -> None:
    """`copying.copy_columns(outs, values, seen)` for an array or a Mosaic (whose pieces
    are copied straight into `outs`, never assembled)."""
    if isinstance(values, Mosaic):
        values.copy_into(outs, seen)
    elif len(outs) == 1:   # one chunk: fewer checks (a million-block run has a million)
        copy_region(outs[0], values, seen)
    else:
        copy_columns(outs, values, seen)

