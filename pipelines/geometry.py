"""Boxes, chunk and block grids, and the one place that owns axis order.

Planning speaks the user's order, x, y, z (job files, tile JSON, N5 keys and
headers). numpy arrays and Zarr speak z, y, x (C order, x fastest in memory).
`to_zyx` / `to_xyz` are the only conversions between the two; everything else in
the package calls them instead of reversing tuples by hand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

Vec = tuple[int, ...]
T = TypeVar("T")


def triple(values: Iterable[T]) -> tuple[T, T, T]:
    """Exactly three values (one per axis) as a 3-tuple; an error for any other count."""
    a, b, c = values
    return a, b, c


def to_zyx(xyz: Sequence) -> tuple:
    """Reorder a per-axis sequence from x, y, z (user/N5 order) to z, y, x (numpy/Zarr order)."""
    return tuple(reversed(tuple(xyz)))


def to_xyz(zyx: Sequence) -> tuple:
    """Reorder a per-axis sequence from z, y, x (numpy/Zarr order) to x, y, z."""
    return tuple(reversed(tuple(zyx)))


def ceil_div(a, b):
    """-(-a // b): ceiling division of ints, or element-wise of integer numpy arrays."""
    return -(-a // b)


def voxel_count(shape) -> int:
    """Voxels of a shape, exactly, at any size: np.prod wraps around past 2^63 (trial AE:
    views 1e11 apart gave a span of -8e18 bytes; a block of 2^40 voxels a side would need
    0 bytes, and pass any memory check)."""
    return math.prod(int(n) for n in shape)


@dataclass(frozen=True)
class Box:
    """A half-open box [start, stop) of voxels, coordinates in x, y, z order."""

    start: Vec
    stop: Vec

    @classmethod
    def from_shape(cls, start: Sequence[int], shape: Sequence[int]) -> Box:
        start = tuple(int(s) for s in start)
        return cls(start, tuple(s + int(n) for s, n in zip(start, shape)))

    @property
    def shape(self) -> Vec:
        return tuple(max(0, b - a) for a, b in zip(self.start, self.stop))

    @property
    def size(self) -> int:
        return voxel_count(self.shape)

    def is_empty(self) -> bool:
        return any(b <= a for a, b in zip(self.start, self.stop))

    def intersect(self, other: Box) -> Box:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop))
        return Box(start, tuple(max(a, b) for a, b in zip(start, stop)))

    def union(self, other: Box) -> Box:
        """The smallest box holding both boxes."""
        return Box(
            tuple(min(a, b) for a, b in zip(self.start, other.start)),
            tuple(max(a, b) for a, b in zip(self.stop, other.stop)),
        )

    def shift(self, offset: Sequence[int]) -> Box:
        return Box(
            tuple(a + o for a, o in zip(self.start, offset)),
            tuple(b + o for b, o in zip(self.stop, offset)),
        )

    def relative_to(self, origin: Sequence[int]) -> Box:
        return self.shift(tuple(-o for o in origin))

    def slices_zyx(self) -> tuple[slice, ...]:
        """numpy index (z, y, x) for this box inside an array whose origin is 0."""
        return tuple(slice(a, b) for a, b in zip(to_zyx(self.start), to_zyx(self.stop)))


def grid_indices(counts: Sequence[int], start: Sequence[int] | None = None) -> Iterator[Vec]:
    """All grid positions in [start, counts) with x varying fastest."""
    start = start or (0,) * len(counts)
    ranges = [range(a, b) for a, b in zip(start, counts)]
    for zyx in itertools.product(*reversed(ranges)):
        yield to_xyz(zyx)


@dataclass(frozen=True)
class ChunkGrid:
    """Regular chunks of `chunk` voxels over an array of `shape` voxels (x, y, z)."""

    shape: Vec
    chunk: Vec

    @property
    def counts(self) -> Vec:
        return tuple(ceil_div(s, c) for s, c in zip(self.shape, self.chunk))

    def chunk_box(self, index: Sequence[int]) -> Box:
        """The voxels of chunk `index`, clipped to the array (edge chunks are smaller)."""
        start = tuple(i * c for i, c in zip(index, self.chunk))
        stop = tuple(min(a + c, s) for a, c, s in zip(start, self.chunk, self.shape))
        return Box(start, stop)

    def chunks_touching(self, box: Box) -> tuple[Vec, Vec]:
        """Index range [lo, hi) of the chunks that intersect `box`."""
        lo = tuple(max(0, a // c) for a, c in zip(box.start, self.chunk))
        hi = tuple(
            min(n, ceil_div(b, c)) for b, c, n in zip(box.stop, self.chunk, self.counts)
        )
        return lo, hi


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of `per_block` whole chunks of a chunk grid: the unit of work of one task.

    Because a block is a whole number of chunks, every chunk has exactly one owning block,
    so no two tasks ever write the same chunk.
    """

    chunks: ChunkGrid
    per_block: Vec

    @property
    def counts(self) -> Vec:
        return tuple(ceil_div(n, b) for n, b in zip(self.chunks.counts, self.per_block))

    @property
    def block_shape(self) -> Vec:
        """Voxels of a full (non-edge) block."""
        return tuple(c * b for c, b in zip(self.chunks.chunk, self.per_block))

    def chunk_range(self, block: Sequence[int]) -> tuple[Vec, Vec]:
        """Chunk index range [lo, hi) owned by `block`."""
        lo = tuple(i * b for i, b in zip(block, self.per_block))
        hi = tuple(min(a + b, n) for a, b, n in zip(lo, self.per_block, self.chunks.counts))
        return lo, hi

    def block_box(self, block: Sequence[int]) -> Box:
        lo, hi = self.chunk_range(block)
        start = tuple(i * c for i, c in zip(lo, self.chunks.chunk))
        stop = tuple(
            min(i * c, s) for i, c, s in zip(hi, self.chunks.chunk, self.chunks.shape)
        )
        return Box(start, stop)

    def chunks_of(self, block: Sequence[int]) -> Iterator[Vec]:
        lo, hi = self.chunk_range(block)
        return grid_indices(hi, lo)

    def blocks_touching(self, box: Box) -> tuple[Vec, Vec]:
        """Index range [lo, hi) of the blocks that intersect `box`."""
        step = self.block_shape
        lo = tuple(max(0, a // s) for a, s in zip(box.start, step))
        hi = tuple(min(n, ceil_div(b, s)) for b, s, n in zip(box.stop, step, self.counts))
        return lo, hi
