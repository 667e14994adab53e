"""Which tiles to compare, what to read from each, and one pair's measurement.

Per-axis values are x, y, z here (the tile JSON's order); `correlate` works in z, y, x.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from pipelines.geometry import Box, to_xyz, to_zyx, triple
from pipelines.registration.correlate import Window, match
from pipelines.tiles import Tile, TileSet, read_region

Reader = Callable[[Tile, Box], np.ndarray]
# Longest crop side (voxels) read for one pair: a 2048² face is registered from its
# central 512², which holds plenty of structure; a pair of 2048³ tiles then peaks at
# 1.9 GiB (tracemalloc, search 40) instead of 3.9 GiB with 1024 or ~15 GiB uncut.
MAX_CROP = 512


@dataclass(frozen=True)
class PairOptions:
    """How pairs are measured (the [stitching] keys that matter on executors), x, y, z."""

    search: tuple[int, int, int] = (40, 40, 40)      # max error of a pair's stage offset
    downsample: tuple[int, int, int] = (1, 1, 1)     # binning for the all-offset search
    min_overlap: tuple[int, int, int] = (8, 8, 4)    # voxels two tiles must share per axis
    candidates: int = 4                              # coarse peaks refined at full resolution


@dataclass(frozen=True)
class PairShift:
    """One measured pair: where tile `b` sits relative to tile `a` (x, y, z voxels)."""

    a: int
    b: int
    stage: tuple[float, float, float]      # b.position - a.position from the tile JSON
    measured: tuple[float, float, float]   # the same, measured from the pixels
    score: float                           # NCC of the shared voxels at the measured offset
    overlap: int                           # voxels shared at the measured offset

    @property
    def correction(self) -> tuple[float, float, float]:
        return triple(m - s for m, s in zip(self.measured, self.stage))


def find_pairs(tiles: TileSet, options: PairOptions) -> list[tuple[int, int]]:
    """Index pairs (a < b) of tiles that may share at least `min_overlap` voxels per axis
    when each stage offset is wrong by up to `search` voxels.

    Tiles are hashed into a grid of cells as large as the largest tile, so only tiles in
    neighbouring cells are compared: linear in the number of tiles, not quadratic.
    """
    cell = [max(t.size[k] for t in tiles) + options.search[k] for k in range(3)]
    buckets: dict[tuple[int, ...], list[Tile]] = defaultdict(list)
    for t in tiles:
        buckets[tuple(int(np.floor(p / c)) for p, c in zip(t.position, cell))].append(t)
    found = set()
    for key, members in buckets.items():
        for step in itertools.product((-1, 0, 1), repeat=3):
            for b in buckets.get(tuple(k + s for k, s in zip(key, step)), ()):
                for a in members:
                    if a.index < b.index and _may_overlap(a, b, options):
                        found.add((a.index, b.index))
    return sorted(found)


def fitted(options: PairOptions, a: Tile, b: Tile) -> PairOptions:
    """`options` for the pair `a`, `b`: binning and `min_overlap` no larger than the
    thinner tile along each axis. A 2D tile (one slice) binned by 2 in z has no slice
    left, and cannot share the default 4 slices: without this, 2D tiles had no pairs."""
    thin = [min(na, nb) for na, nb in zip(a.size, b.size)]
    return replace(options, downsample=triple(min(f, n) for f, n in zip(options.downsample, thin)),
                   min_overlap=triple(min(m, n) for m, n in zip(options.min_overlap, thin)))


def _may_overlap(a: Tile, b: Tile, options: PairOptions) -> bool:
    options = fitted(options, a, b)
    return all(_best_overlap(o, r, na, nb) >= m
               for o, r, na, nb, m in zip(_stage_offset(a, b), options.search, a.size, b.size,
                                          options.min_overlap))


def _best_overlap(offset: int, radius: int, na: int, nb: int) -> int:
    """The largest 1D overlap of [d, d + nb) with [0, na) for |d - offset| <= radius."""
    # the overlap is largest on the plateau between 0 and na - nb; take its nearest point
    d = int(np.clip(offset, min(0, na - nb), max(0, na - nb)))
    d = int(np.clip(d, offset - radius, offset + radius))
    return min(na, d + nb) - max(0, d)


def _stage_offset(a: Tile, b: Tile) -> tuple[int, int, int]:
    return triple(int(np.floor(q - p + 0.5)) for p, q in zip(a.position, b.position))


def crop_boxes(a: Tile, b: Tile, search: Sequence[int],
               longest: int | None = None) -> tuple[Box, Box]:
    """What to read from `a` and from `b` (boxes relative to each tile's origin): every
    voxel the other tile can cover for any offset within `search` of the stage offset.

    Along an axis where that is longer than `longest` (the long sides of a face overlap of
    big tiles), `a` keeps its central `longest` voxels and `b` what can meet them: the
    memory of a pair task stays bounded however large the tiles are.
    """
    offset, longest = _stage_offset(a, b), longest or MAX_CROP
    starts_a, stops_a, starts_b, stops_b = [], [], [], []
    for o, r, na, nb in zip(offset, search, a.size, b.size):
        lo_a, hi_a = max(0, o - r), min(na, o + r + nb)
        if hi_a - lo_a > longest:
            lo_a = (lo_a + hi_a - longest) // 2
            hi_a = lo_a + longest
        starts_a.append(lo_a)
        stops_a.append(hi_a)
        starts_b.append(max(0, -o - r, lo_a - o - r))
        stops_b.append(min(nb, -o + r + na, hi_a - o + r))
    return Box(tuple(starts_a), tuple(stops_a)), Box(tuple(starts_b), tuple(stops_b))


def register_pair(a: Tile, b: Tile, options: PairOptions,
                  read: Reader = read_region) -> PairShift | None:
    """Measure where `b` sits relative to `a`; None when no offset in the window matches.

    Only the two crops are read. The search window is centred on the stage offset, so a
    repetitive structure far from where the stage says the tiles meet cannot win.
    """
    options = fitted(options, a, b)
    box_a, box_b = crop_boxes(a, b, options.search)
    if box_a.is_empty() or box_b.is_empty():
        return None
    offset = _stage_offset(a, b)
    # crop b's first voxel in crop a's coordinates, for b at `offset` in a's coordinates
    centre = tuple(o + sb - sa for o, sa, sb in zip(offset, box_a.start, box_b.start))
    window = Window(to_zyx(centre), to_zyx(options.search), to_zyx(options.min_overlap))
    found = match(read(a, box_a), read(b, box_b), window, to_zyx(options.downsample),
                  count=options.candidates)
    if found is None:
        return None
    measured = tuple(d - sb + sa for d, sa, sb in
                     zip(to_xyz(found.displacement), box_a.start, box_b.start))
    stage = triple(q - p for p, q in zip(a.position, b.position))
    return PairShift(a.index, b.index, stage, triple(float(round(v, 3)) for v in measured),
                     round(found.score, 4), found.overlap)


@dataclass(frozen=True)
class PairJob:
    """What every pair task shares: the tiles, how pairs are measured, how S3 is reached."""

    tiles: TileSet
    options: PairOptions
    s3: object = None  # S3Options or None


def measure_pair(job: PairJob, pair: tuple[int, int], attempt: int) -> PairShift | None:
    """The function executors run for each pair: read the two crops, measure the offset."""
    index = job.tiles.by_index()
    return register_pair(index[pair[0]], index[pair[1]], job.options,
                         read=partial(read_region, s3=job.s3))
