"""Fusion: blend the tiles that overlap one block into that block's voxels.

Blending rules (`fusion.blending`):
- `max`: the brightest tile wins;
- `average`: the plain mean of the tiles covering a voxel;
- `linear`: a weighted mean whose weight falls linearly towards each tile's edges, so
  across an overlap one tile fades out as the other fades in and no seam shows;
- `first`: the tile with the lowest index wins;
- `closest`: the tile whose centre is nearest the voxel wins (BigStitcher-Spark's
  closest-pixel fusion), nearest in output voxels (not µm: on an anisotropic output
  grid a step along z counts as one along x); ties go to the lower index.
A voxel covered by one tile equals that tile under every rule; a voxel covered by none
is 0 (the fill value). Sums are float32 where tiles and output are integers, float64
where either is floating point (`sums_dtype`). The result is cast to the output type (rounded and clipped for
integer types). Tiles are always visited in ascending index order, so the result is a
pure function of the inputs: a retried task computes the same bytes.

Interpolation (`fusion.interpolation`): how a tile placed by a translation is sampled at
its stage position is `pipelines.pixels.resample`'s (`sampler`); for both rules the voxels
a tile reaches lie in `Tile.box`, and blending weights stay based on it.

A tile with an affine (`Tile.transform`) is sampled through it (`pipelines.pixels.resample`):
each output voxel is mapped back into the view, and the view contributes only where the
voxel lands inside it; its `linear` weights are computed in its own pixel space.

Speed: where blending a voxel covered by one tile provably returns the tile's value
(integer tiles of up to 16 bits, no resampling, integer output; see `_copyable`), such
voxels are copied and only the zones tiles share are blended; the bytes are the same.
In large blocks of outputs up to 16 bits, `linear` blends those zones in one compiled
pass over each cell that several tiles cover (`_blend_linear_compiled`,
`pipelines.pixels.blend_kernel`), again with the same bytes.
`fuse_pieces` gives the same voxels without assembling them (`pipelines.pixels.mosaic`): the
tiles' regions where one tile covers the voxels, and the blended zones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from pipelines.geometry import Box, to_zyx
from pipelines.pixels.copying import MIN_BYTES, copy_region, row_run, separate_rows
from pipelines.pixels.mosaic import Mosaic
from pipelines.pixels.pyramid import to_dtype
from pipelines.pixels.resample import (
    Contribution,
    Reader,
    closeness,
    sample_affine,
    sample_linear,
    sample_nearest,
    sampler,
)
from pipelines.tiles import Tile, read_region


def fuse(block: Box, tiles: Iterable[Tile], offset, blending: str, dtype,
         read: Reader = read_region, interpolation: str = "nearest") -> np.ndarray:
    """The fused voxels of `block` (output coordinates) as a z, y, x array of `dtype`.

    `offset` is the (integer) stage position of output voxel (0, 0, 0); each tile covers
    its box (rounded stage position) minus `offset`. `read(tile, region)` returns a
    region of a tile's pixels (x, y, z relative to the tile) as a z, y, x array.
    `interpolation` is one of `resample.INTERPOLATIONS`.
    """
    return _fuse(block, _visible(block, tiles, offset, blending), offset, blending, dtype, read,
                 interpolation)


def _fuse(block: Box, visible, offset, blending: str, dtype, read: Reader,
          interpolation: str) -> np.ndarray:
    """`fuse` of the (tile, placed box) pairs reaching the block (`_visible`)."""
    sample = sampler(interpolation)
    if _copyable(visible, dtype, interpolation):
        return _fuse_by_copy(block, visible, blending, dtype, read)
    return _cast_owned(_blend(block, visible, blending, sample, read, offset, interpolation,
                              sums_dtype(dtype, (tile.dtype for tile, _ in visible))), dtype)


def sums_dtype(dtype, tile_types: Iterable[np.dtype]) -> np.dtype:
    """The type blending sums weights and weighted values in: float32 where the tiles
    (of one channel: one type) and the output `dtype` are integers — a voxel one tile
    covers then rounds back to its value, and the compiled kernel sums the same way —
    float64 where either is floating point: (w·v)/w in float32 can be 1 ulp from v, which
    changed voxels one tile covers in a float output and rounded x.5 the wrong way into
    an integer one (trial N). Decided by types alone, never by the block, so the bytes do
    not depend on how the volume is cut."""
    kinds = {np.dtype(dtype).kind} | {np.dtype(t).kind for t in tile_types}
    return np.dtype(np.float64 if "f" in kinds else np.float32)


def fuse_pieces(block: Box, tiles: Iterable[Tile], offset, blending: str, dtype,
                read: Reader = read_region, interpolation: str = "nearest") -> np.ndarray | Mosaic:
    """`fuse`, for a caller that only takes slices of the block (encoding its objects, no
    level computed from it): where two or more copyable tiles (`_copyable`) reach a block
    of at least `copying.MIN_BYTES` and read as the output's type, it comes back as a
    `Mosaic` — the tiles' regions where they do not overlap (not copied), and the zones
    they share blended — the same voxels, not assembled into one array."""
    sampler(interpolation)   # an unknown name fails here as in `fuse`
    visible = _visible(block, tiles, offset, blending)
    out = np.dtype(dtype)
    small = math.prod(block.shape) * out.itemsize < MIN_BYTES   # copied by numpy: nothing to save
    if small or not (len(visible) > 1 and _copyable(visible, out, interpolation)):
        return _fuse(block, visible, offset, blending, dtype, read, interpolation)
    regions = _read_regions(block, visible, read)
    if any(data.dtype != out for _, data in regions.values()):
        # e.g. big-endian TIFFs, or corrected (float32) pixels: fusion converts them
        def read_once(tile: Tile, region: Box) -> np.ndarray:
            found = regions.get(tile.index)
            return found[1] if found is not None and found[0] == region else read(tile, region)
        return _fuse(block, visible, offset, blending, dtype, read_once, interpolation)
    if _apart(block, visible):   # tiles side by side: each tile's region is a piece
        starts = [to_zyx(placed.intersect(block).relative_to(block.start).start) for _, placed in visible]
        return Mosaic(to_zyx(block.shape), out, tuple(starts),
                      tuple(regions[tile.index][1] for tile, _ in visible))
    # Tiles that overlap: a piece per cell. Blended cells are written into their parts of
    # a block-sized array, the rest of which is never written (the copy saved).
    shared = np.empty(to_zyx(block.shape), dtype=out)
    cells = [(cell, values, blended) for cell, values, blended in
             _cell_values(block, visible, blending, shared, regions, _block_cells(block, visible))]
    shared.flags.writeable = False   # a Mosaic is read-only, its blended pieces too
    corners = tuple(to_zyx(cell.relative_to(block.start).start) for cell, _, _ in cells)
    pieces = tuple(shared[cell.relative_to(block.start).slices_zyx()] if blended else values
                   for cell, values, blended in cells)
    return Mosaic(to_zyx(block.shape), out, corners, pieces)


def _visible(block: Box, tiles: Iterable[Tile], offset, blending: str) -> list[tuple[Tile, Box]]:
    """(tile, its box in output coordinates) of the tiles reaching `block`, by index."""
    if blending not in _BLEND:
        raise ValueError(f"unknown blending {blending!r}; expected one of {', '.join(_BLEND)}")
    visible = []
    for tile in sorted(tiles, key=lambda t: t.index):
        placed = tile.box.relative_to(offset)
        if not placed.intersect(block).is_empty():
            visible.append((tile, placed))
    return visible


def _apart(block: Box, visible) -> bool:
    """Whether no two of the placed boxes share a voxel of `block`."""
    inside = [placed.intersect(block) for _, placed in visible]
    return all(a.intersect(b).is_empty() for n, a in enumerate(inside) for b in inside[n + 1:])


def _blend(box: Box, visible, blending: str, sample, read: Reader, offset=(0, 0, 0),
           interpolation: str = "nearest", sums: Any = np.float32) -> np.ndarray:
    """The blended values over `box` of the (tile, placed box) pairs in `visible`, in index
    order, summed in `sums` (`sums_dtype`); voxels no tile covers are 0."""
    shape = to_zyx(box.shape)
    value = np.zeros(shape, dtype=sums)
    weight = np.zeros(shape, dtype=sums)
    with np.errstate(invalid="ignore"):   # NaN and ±inf in tiles spread as documented
        _blend_into(value, weight, box, visible, blending, sample, read, offset, interpolation)
    if blending in ("average", "linear"):
        np.divide(value, weight, out=value, where=weight > 0)
    return value


def _blend_into(value, weight, box: Box, visible, blending: str, sample, read: Reader, offset,
                interpolation: str) -> None:
    """Each visible tile's contribution added into `value` and `weight` (`_blend`)."""
    for tile, placed in visible:
        overlap = placed.intersect(box)
        if overlap.is_empty():
            continue
        if tile.transform is not None:
            part = sample_affine(tile, overlap, offset, read, interpolation)
            if part is None:
                continue
        else:
            part = _placed_part(tile, overlap, placed, sample, read)
        at = overlap.relative_to(box.start).slices_zyx()
        _BLEND[blending](value[at], weight[at], part)


def _placed_part(tile: Tile, overlap: Box, placed: Box, sample, read: Reader) -> Contribution:
    """What a tile placed at `placed` (a translation) contributes to `overlap`: all of it,
    except, resampled at a sub-voxel position (`linear`), the voxels beyond its outer
    pixel centres, which it does not reach (as a view placed by an affine does not)."""
    resampled = sample is sample_linear
    # resampled, the tile's pixels sit at its sub-voxel position, and `closest` measures
    # from its centre there (trial AI: from the rounded one, a voxel 6.0 from one tile's
    # centre and 6.5 from the other's went to the farther)
    centre = tuple(a + (n - 1) / 2 + ((p - o) if resampled else 0.0)
                   for a, n, p, o in zip(placed.start, tile.size, tile.position, tile.origin))
    inside = _reached(tile, overlap.relative_to(placed.start)) if resampled else None

    def only_inside(values: np.ndarray) -> np.ndarray:
        return values if inside is None else values * inside

    return Contribution(sample(tile, overlap.relative_to(placed.start), read), inside,
                        lambda: only_inside(edge_weights(tile, overlap, placed)),
                        lambda: only_inside(closeness(overlap, centre)))


def _reached(tile: Tile, region: Box) -> np.ndarray | None:
    """The voxels of `region` (relative to the tile's box) whose centres lie between the
    tile's outer pixel centres at its sub-voxel position (z, y, x booleans); None when
    that is all of them. Beyond them trilinear sampling has no second pixel to take."""
    axes = []
    for start, stop, size, origin, position in zip(region.start, region.stop, tile.size,
                                                   tile.origin, tile.position):
        u = np.arange(origin + start, origin + stop, dtype=np.float64) - position
        axes.append((u >= 0) & (u <= size - 1))
    if all(a.all() for a in axes):
        return None
    x, y, z = axes
    return z[:, None, None] & y[None, :, None] & x[None, None, :]


def _copyable(visible, dtype, interpolation: str) -> bool:
    """Whether a voxel covered by one tile may be copied instead of blended: true when
    blending it gives back the tile's own value exactly. That holds for integer tiles of at
    most 16 bits, sampled without resampling, into an integer output: under `linear` the
    value is (w·v)/w in float32, within 2**-22 · |v| < 0.02 of v, and rounds back to v."""
    out = np.dtype(dtype)
    return out.kind in "iu" and all(
        tile.transform is None and tile.dtype.kind in "iu" and tile.dtype.itemsize <= 2 and
        (interpolation == "nearest" or tuple(float(p) for p in tile.position) == tile.origin)
        for tile, _ in visible)


def _fuse_by_copy(block: Box, visible, blending: str, dtype, read: Reader) -> np.ndarray:
    """`fuse` for copyable tiles (`_copyable`): every tile region is read once; the block is
    cut into cells (`_cells`), a cell one tile covers is copied from it and a cell several
    tiles cover is blended from the same reads (`_cell_values`). Gives the bytes blending
    the whole block gives (see `_copyable`); a block inside one memory-mapped tile costs no
    copy at all."""
    if len(visible) == 1 and visible[0][1].intersect(block) == block:
        tile, placed = visible[0]
        data = read(tile, block.relative_to(placed.start))
        if data.dtype == np.dtype(dtype) and not data.flags.writeable:
            # One tile covers the whole block (tiles placed side by side): its pixels are
            # the block. A read-only view (a memory-mapped tile) is returned as it is,
            # saving a block-sized allocation and copy; it cannot be modified by mistake.
            return data
        return data.copy() if data.dtype == np.dtype(dtype) else _cast_owned(data.astype(np.float32), dtype)
    cells = _block_cells(block, visible)
    # every voxel is written below when the tiles cover the block: no zeroing pass needed
    covered = all(members for _, members in cells)
    out = (np.empty if covered else np.zeros)(to_zyx(block.shape), dtype=dtype)
    for cell, values, blended in _cell_values(block, visible, blending, out,
                                               _read_regions(block, visible, read), cells):
        if not blended:
            _place(out[cell.relative_to(block.start).slices_zyx()], values)
    return out


def _read_regions(block: Box, visible, read: Reader) -> dict[int, tuple[Box, np.ndarray]]:
    """Tile index → (the region of the tile reaching `block`, relative to the tile; its
    pixels), each read once."""
    regions = {}
    for tile, placed in visible:
        region = placed.intersect(block).relative_to(placed.start)
        regions[tile.index] = (region, read(tile, region))
    return regions


def _block_cells(block: Box, visible) -> list[tuple[Box, list[int]]]:
    """`_cells` of the block cut by the placed boxes of `visible`."""
    return list(_cells(block, [placed.intersect(block) for _, placed in visible]))


def _cell_values(block: Box, visible, blending: str, out: np.ndarray,
                 regions: dict[int, tuple[Box, np.ndarray]], cells: list[tuple[Box, list[int]]]
                 ) -> Iterator[tuple[Box, np.ndarray, bool]]:
    """(cell, its values, whether blended) for each of the block's `cells`
    (`_block_cells`) some tile covers: the pixels read (`regions`) of the one tile
    covering a cell, as read; for a cell several tiles share, the blend of their reads
    written into its part of `out` (the block's array, of the output type) — for
    `linear`, in large blocks, in one compiled pass (`_blend_linear_compiled`)."""
    def reread(tile: Tile, region: Box) -> np.ndarray:   # a part of what was read
        first, data = regions[tile.index]
        return data[region.relative_to(first.start).slices_zyx()]

    compiled = blending == "linear" and _compiled_blend_applies(out, regions.values())
    for cell, members in cells:
        sharing = [visible[n] for n in members]   # ascending tile index, as `_blend` adds them
        if not sharing:   # no tile covers the cell: its voxels stay 0
            continue
        if len(sharing) == 1:
            tile, placed = sharing[0]
            yield cell, reread(tile, cell.relative_to(placed.start)), False
            continue
        target = out[cell.relative_to(block.start).slices_zyx()]
        if compiled:
            _blend_linear_compiled(target, cell, sharing, reread)
        else:
            sums = sums_dtype(out.dtype, (tile.dtype for tile, _ in sharing))
            target[...] = _cast_owned(_blend(cell, sharing, blending, sample_nearest, reread,
                                             sums=sums), out.dtype)
        yield cell, target, True


def _place(target: np.ndarray, data: np.ndarray) -> None:
    """target[...] = a copyable tile's pixels, cast to the target's type when they differ."""
    if data.dtype == target.dtype:
        copy_region(target, data)
    else:
        target[...] = _cast_owned(data.astype(np.float32), target.dtype)


def _compiled_blend_applies(out: np.ndarray, regions) -> bool:
    """Whether `blend_kernel` may blend the cells of `out` from the (region, data) reads:
    an output of up to 16 bits (`_cast_owned`'s float32 rounding), reads of one type in
    native byte order with contiguous rows (numba's arrays, `copying.row_run`), and a
    block large enough to be worth numba's import in this process (as for `copy_region`)."""
    types = {data.dtype for _, data in regions}
    return (out.dtype.itemsize <= 2 and out.nbytes >= MIN_BYTES and len(types) == 1
            and types.pop().isnative and all(separate_rows(data) for _, data in regions))


def _blend_linear_compiled(target: np.ndarray, cell: Box, sharing, read: Reader) -> None:
    """target[...] = the `linear` blend over `cell`, which every (tile, placed box) of
    `sharing` covers, in one compiled pass (`pipelines.pixels.blend_kernel`): the bytes of
    `_blend` + `_cast_owned`."""
    from pipelines.pixels.blend_kernel import blend_linear  # numba: only for large blocks

    sources, planes, rows = [], [], []
    for tile, placed in sharing:
        run, plane, row = row_run(read(tile, cell.relative_to(placed.start)), writeable=False)
        sources.append(run)
        planes.append(plane)
        rows.append(row)
    factors = [_edge_factors(tile, cell, placed) for tile, placed in sharing]
    wx, wy, wz = (np.stack([f[axis] for f in factors]) for axis in range(3))
    out, o_plane, o_row = row_run(target, writeable=True)
    info = np.iinfo(target.dtype)
    kernel: Any = blend_linear   # a numba dispatcher: its signature is the compiled function's
    kernel(tuple(sources), np.array(planes, dtype=np.int64), np.array(rows, dtype=np.int64),
           wz, wy, wx, out, o_plane, o_row, *to_zyx(cell.shape),
           np.float32(info.min), np.float32(info.max))


def _cells(block: Box, boxes: list[Box]) -> Iterator[tuple[Box, list[int]]]:
    """The (small) grid the boxes' faces cut `block` into: each cell with the positions in
    `boxes` of the boxes holding it (every voxel of a cell lies in the same boxes)."""
    inside = [b.intersect(block) for b in boxes]
    cuts = [sorted({block.start[a], block.stop[a],
                    *(v for b in inside if not b.is_empty() for v in (b.start[a], b.stop[a]))})
            for a in range(3)]
    if block.is_empty():
        return
    held = np.zeros((len(boxes), *(len(c) - 1 for c in cuts)), dtype=bool)
    for n, b in enumerate(inside):
        if not b.is_empty():
            x, y, z = (slice(c.index(lo), c.index(hi)) for c, lo, hi in zip(cuts, b.start, b.stop))
            held[n, x, y, z] = True
    for x, y, z in np.ndindex(*held.shape[1:]):
        cell = Box((cuts[0][x], cuts[1][y], cuts[2][z]), (cuts[0][x + 1], cuts[1][y + 1], cuts[2][z + 1]))
        yield cell, [int(n) for n in np.flatnonzero(held[:, x, y, z])]


def edge_weights(tile: Tile, region: Box, placed: Box) -> np.ndarray:
    """Linear blending weights of `region` inside a tile placed at `placed` (z, y, x).

    Per axis the weight is the distance to the nearer tile edge (in voxel centres), so it
    is largest in the middle and falls towards 0 at both edges; the 3D weight is the
    product over the axes.
    """
    wx, wy, wz = _edge_factors(tile, region, placed)
    return wz[:, None, None] * wy[None, :, None] * wx[None, None, :]


def _edge_factors(tile: Tile, region: Box, placed: Box) -> list[np.ndarray]:
    """The per-axis factors (x, y, z; float32) of `edge_weights`."""
    factors = []
    for a, b, n, p in zip(region.start, region.stop, tile.size, placed.start):
        i = np.arange(a - p, b - p, dtype=np.float32) + 0.5
        factors.append(np.minimum(i, n - i))
    return factors


def _cast_owned(values: np.ndarray, dtype) -> np.ndarray:
    """`pyramid.to_dtype` of a float32 array nobody else holds: rounds and clips in place
    (two passes fewer, no temporaries), the same values."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize >= 4 or values.dtype != np.float32:
        return to_dtype(values, dtype)   # wide integers go through float64 there
    info = np.iinfo(dtype)
    np.rint(values, out=values)
    np.clip(values, float(info.min), float(info.max), out=values)
    np.copyto(values, 0, where=np.isnan(values))   # as `to_dtype`
    return values.astype(dtype)


# Each rule adds one tile's Contribution `part` into the running `value` and `weight`
# (weight 0: no tile yet); `part.inside` limits it to the voxels the tile covers.

def _max(value, weight, part: Contribution):
    data, inside = part.data, part.inside
    if inside is None:
        np.maximum(value, data, out=value, where=weight > 0)
        np.copyto(value, data, where=weight == 0)
        weight += 1
        return
    np.maximum(value, data, out=value, where=(weight > 0) & inside)
    np.copyto(value, data, where=(weight == 0) & inside)
    weight += inside


def _first(value, weight, part: Contribution):
    # lower indices came first and keep their voxels
    fresh = weight == 0 if part.inside is None else (weight == 0) & part.inside
    np.copyto(value, part.data, where=fresh)
    weight += 1 if part.inside is None else part.inside


def _average(value, weight, part: Contribution):
    if part.inside is None:
        value += part.data
        weight += 1
        return
    np.add(value, part.data, out=value, where=part.inside)
    weight += part.inside


def _linear(value, weight, part: Contribution):
    w = part.weights()   # 0 where the tile does not cover the voxel
    weight += w
    # only where it covers: 0 x NaN (or ±inf) is NaN, and a NaN in a tile's outer pixels,
    # sampled past them, wiped out the next tile's voxel (trial AI)
    inside = True if part.inside is None else part.inside
    if value.dtype != w.dtype:   # float64 sums (`sums_dtype`): the product exact too
        product = w.astype(value.dtype)
        np.multiply(product, part.data, out=product, where=inside)
        value += product
        return
    np.multiply(w, part.data, out=w, where=inside)   # w is a fresh array: no temporary
    value += w


def _closest(value, weight, part: Contribution):
    near = part.closeness()   # > 0, larger is nearer; 0 where the tile does not cover
    np.copyto(value, part.data, where=near > weight)   # strictly nearer: ties keep the lower index
    np.maximum(weight, near, out=weight)


_BLEND = {"max": _max, "first": _first, "average": _average, "linear": _linear,
          "closest": _closest}
