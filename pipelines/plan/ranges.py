"""Sets of grid cells described by index boxes: counted, cut into partitions, walked in
Morton order, without listing the cells of the whole set.

A stage's blocks are the union of boxes [lo, hi) of a block grid (one box per tile at stage
0), so a plan of millions of blocks is a few arrays of box corners (DESIGN rule 8). Cells
are listed only for one partition at a time, on the executor that runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipelines.geometry import Vec

# Cells of the compressed grid filled at once; larger grids are filled in slabs.
_CELLS_AT_ONCE = 1 << 26
_MORTON_BITS = 21  # bits per axis in one key: 3 x 21 = 63 bits


def union_size(lo: np.ndarray, hi: np.ndarray) -> int:
    """Cells of the union of integer boxes [lo, hi) (arrays (n, 3)), on a compressed grid:
    cell edges are the boxes' distinct edges, each cell weighted by its size."""
    lo, hi = np.asarray(lo, dtype=np.int64).reshape(-1, 3), np.asarray(hi, dtype=np.int64).reshape(-1, 3)
    keep = np.all(hi > lo, axis=1)
    lo, hi = lo[keep], hi[keep]
    if not len(lo):
        return 0
    edges = [np.unique(np.concatenate([lo[:, a], hi[:, a]])) for a in range(3)]
    first = [np.searchsorted(edges[a], lo[:, a]) for a in range(3)]
    last = [np.searchsorted(edges[a], hi[:, a]) for a in range(3)]
    # cell counts in int64 unless the boxes' bounding box could hold 2^62 cells or more:
    # then in Python ints (object arrays, slower), as int64 would wrap to a wrong count
    span = math.prod(int(e[-1] - e[0]) for e in edges)
    kind = np.int64 if span < 2**62 else object
    widths = [np.diff(e).astype(kind) for e in edges]
    cells = [len(e) - 1 for e in edges]
    slab = max(1, _CELLS_AT_ONCE // max(1, cells[1] * cells[2]))
    total = 0
    for x0 in range(0, cells[0], slab):   # slabs bound the memory of irregular layouts
        x1 = min(cells[0], x0 + slab)
        grid = np.zeros((x1 - x0, cells[1], cells[2]), dtype=bool)
        for n in np.flatnonzero((first[0] < x1) & (last[0] > x0)):
            grid[max(first[0][n], x0) - x0:min(last[0][n], x1) - x0,
                 first[1][n]:last[1][n], first[2][n]:last[2][n]] = True
        total += int(widths[0][x0:x1] @ ((grid.astype(kind) @ widths[2]) @ widths[1]))
    return total


def morton_keys(indices: np.ndarray) -> np.ndarray:
    """Z-order (Morton) keys of grid indices (n, 3) below 2^21, x in the lowest bit: sorting
    by them walks the grid in nested 2 x 2 x 2 cubes, so cells close in the order are close
    in space. `morton_order` sorts indices of any size."""
    indices = np.asarray(indices, dtype=np.uint64).reshape(-1, 3)
    if len(indices) and int(indices.max()) >= 1 << _MORTON_BITS:
        raise ValueError(f"grid index {int(indices.max())} too large for one Morton key")
    keys = np.zeros(len(indices), dtype=np.uint64)
    bits = int(indices.max()).bit_length() if len(indices) else 0   # only the bits in use
    for bit in range(bits):
        for axis in range(3):
            keys |= ((indices[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return keys


def morton_order(indices: np.ndarray) -> np.ndarray:
    """The stable argsort that walks grid indices (n, 3) in Morton order, for any
    non-negative int64 indices: tiles far apart make grids of more than 2^21 cells a side
    (one 63-bit key). Each 21 bits of every axis make one key, compared most significant
    first — the order of one key holding all the bits."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1, 3)
    if not len(indices):
        return np.zeros(0, dtype=np.int64)
    words = max(1, -(-int(indices.max()).bit_length() // _MORTON_BITS))
    mask = (1 << _MORTON_BITS) - 1
    keys = [morton_keys((indices >> (_MORTON_BITS * w)) & mask) for w in range(words)]
    return np.lexsort(keys)   # the last key, the most significant bits, sorts first


def partition_shape(counts: Sequence[int], per_task: int) -> Vec:
    """Blocks per partition along x, y, z: at most `per_task` blocks, powers of two (or the
    grid's whole side, where that is shorter), as close to a cube as the grid allows (the
    axis with the fewest blocks grows first, x before y before z), so a partition's blocks
    share the tiles they read."""
    shape = [1, 1, 1]
    while True:
        growable = [a for a in range(3) if shape[a] < counts[a]]
        if not growable or int(np.prod(shape)) * 2 > per_task:
            return tuple(min(s, max(1, n)) for s, n in zip(shape, counts))
        shape[min(growable, key=lambda a: (shape[a], a))] *= 2


def expand_boxes(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every cell of every box [lo, hi) (arrays (n, 3), boxes may overlap): (cells (m, 3),
    the box of each cell (m,)), cells of one box consecutive with x fastest."""
    extent = np.maximum(hi - lo, 0)
    box = np.repeat(np.arange(len(lo)), np.prod(extent, axis=1))
    local = ranks_within(np.prod(extent, axis=1))
    ex, ey = extent[box, 0], extent[box, 1]
    cells = np.stack([local % ex, (local // ex) % ey, local // (ex * ey)], axis=1) + lo[box]
    return cells, box


def ranks_within(sizes: np.ndarray) -> np.ndarray:
    """0, 1, …, n - 1 for each n in `sizes`, concatenated."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def linear_cells(lo: np.ndarray, hi: np.ndarray, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The linear index (x fastest) on a grid of `counts` of every cell of every box
    [lo, hi) (arrays (n, 3)), and the box of each: `expand_boxes` without the (m, 3)
    array, for the millions of (partition, box) pairs of a petabyte plan."""
    extent = np.maximum(hi - lo, 0)
    box = np.repeat(np.arange(len(lo), dtype=np.int32), np.prod(extent, axis=1))
    local = ranks_within(np.prod(extent, axis=1))
    linear, stride = np.zeros(len(local), dtype=np.int64), 1
    for axis in range(3):
        along = extent[box, axis]
        linear += (lo[box, axis] + local % along) * stride
        local //= along
        stride *= int(counts[axis])
    return linear, box
