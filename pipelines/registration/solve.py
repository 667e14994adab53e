"""The global translation problem: tile positions that agree best with every pair.

Each kept pair says "b sits at `measured` from a". The positions minimising the weighted
sum of squared disagreements solve a graph-Laplacian system, one right-hand side per axis;
conjugate gradients solves it with memory and time linear in the number of pairs, so
100 000 tiles are fine. A link that disagrees with the solution by more than
`max_residual` voxels is a wrong measurement (a repetitive structure, an empty overlap).
A wrong link pulls its tiles, so the good links beside it disagree too, by less: each
round drops only the links that disagree most at both of their tiles, and solves again.
Once every kept link agrees, links dropped on the way that agree with those positions
come back (each once) and the system is solved again.

Each connected group of linked tiles is then placed so that its tiles' mean correction is
as close to zero as whole voxels allow (the acquisition does not drift, and a group whose
measured offsets are whole voxels lands on whole voxels, so fusion need not resample it).
A tile with no trustworthy link keeps its stage position.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.geometry import triple
from pipelines.registration.pairs import PairShift


@dataclass(frozen=True)
class Link:
    """One pair in the solution: its measurement, residual (voxels) and whether it was kept."""

    shift: PairShift
    residual: float
    kept: bool


@dataclass(frozen=True)
class Solution:
    """What `solve` found: every tile's position, each pair link with its residual and
    whether it was kept, and the tiles no kept link reached."""

    positions: dict[int, tuple[float, float, float]]   # tile index → x, y, z
    links: tuple[Link, ...]
    unlinked: tuple[int, ...]     # tiles without a kept link: left at their stage position
    groups: int                   # connected groups of linked tiles
    rounds: int                   # solves until every kept link agreed
    # tiles held by one kept link while a link of theirs scoring as high or higher was
    # dropped as inconsistent: nothing tells which is wrong (`_contradicted`)
    contradicted: tuple[int, ...] = ()


def solve(stage: dict[int, Sequence[float]], shifts: Sequence[PairShift], min_score: float,
          max_residual: float, exact: Collection[int] = ()) -> Solution:
    """Positions for every tile of `stage` (index → x, y, z) from the pair `shifts`.

    Pairs scoring below `min_score` are not used. A pair's weight is its score times the
    voxels it was measured over: a face overlap's offset is surer than a corner's, and a
    wrong corner link must not outweigh the face links around it.
    """
    order = sorted(stage)
    row = {index: n for n, index in enumerate(order)}
    start = np.array([stage[i] for i in order], dtype=np.float64).reshape(-1, 3)
    kept = np.array([s.score >= min_score for s in shifts], dtype=bool)
    a = np.array([row[s.a] for s in shifts], dtype=np.int64)
    b = np.array([row[s.b] for s in shifts], dtype=np.int64)
    measured = np.array([s.measured for s in shifts], dtype=np.float64).reshape(-1, 3)
    score = np.array([s.score for s in shifts], dtype=np.float64)
    weight = np.maximum(score, 0.0) * np.array([s.overlap for s in shifts], dtype=np.float64)
    usable = kept.copy()
    taken_back = np.zeros(len(shifts), dtype=bool)
    rounds, positions = 0, start.copy()
    while True:   # each round drops a link or takes one back for good: at most 2 × links
        rounds += 1
        positions = _least_squares(start, a[kept], b[kept], measured[kept], weight[kept])
        residual = np.linalg.norm(positions[b] - positions[a] - measured, axis=1)
        disagree = kept & (residual > max_residual)
        if disagree.any():
            kept &= ~_worst_at_both_tiles(residual, disagree, a, b, len(order))
            continue
        back = usable & ~kept & ~taken_back & (residual <= max_residual)
        if not back.any():
            break
        kept |= back
        taken_back |= back
    labels = _components(len(order), a[kept], b[kept])
    linked = np.zeros(len(order), dtype=bool)
    linked[a[kept]] = linked[b[kept]] = True
    positions = _place_groups(positions, start, labels, linked,
                              np.isin(np.asarray(order), np.fromiter(exact, dtype=np.int64)))
    residual = np.linalg.norm(positions[b] - positions[a] - measured, axis=1)
    links = tuple(Link(s, round(float(r), 4), bool(k)) for s, r, k in zip(shifts, residual, kept))
    return Solution(
        positions={i: triple(float(round(v, 3)) for v in positions[row[i]]) for i in order},
        links=links, unlinked=tuple(i for i in order if not linked[row[i]]),
        groups=len(set(labels[linked].tolist())), rounds=rounds,
        contradicted=tuple(order[n] for n in _contradicted(len(order), a, b, kept, usable, score)))


def _contradicted(n: int, a, b, kept, usable, score) -> list[int]:
    """Rows of the tiles held by exactly one kept link while a usable link of theirs
    scoring as high or higher was dropped as inconsistent. The kept link's residual is 0
    by construction and a measurement as sure disagrees with it: one side is wrong, and
    the solve cannot tell which (trial AC: a blank tile, a duplicated one and one beyond
    stitching.search each hung on a chance peak scoring 0.50-0.55, kept for its larger
    overlap over pairs scoring 0.55-0.74, and landed 23-30 voxels off, unwarned). A tile
    whose kept link outscores the dropped ones is not named: that is a wrong link found."""
    degree = np.bincount(a[kept], minlength=n) + np.bincount(b[kept], minlength=n)
    held_by = np.zeros(n)   # the score of a tile's kept link (of its only one, where it matters)
    held_by[a[kept]] = score[kept]
    held_by[b[kept]] = score[kept]
    dropped = usable & ~kept
    rival = np.zeros(n)   # the best score among a tile's dropped usable links
    np.maximum.at(rival, a[dropped], score[dropped])
    np.maximum.at(rival, b[dropped], score[dropped])
    return np.flatnonzero((degree == 1) & (rival > 0) & (rival >= held_by)).tolist()


def _worst_at_both_tiles(residual, disagree, a, b, n) -> np.ndarray:
    """The `disagree`ing links whose residual is the largest of those at each of their two
    tiles: the wrong measurements themselves, not the good links their pull spoiled (at
    least one: the worst of all)."""
    worst = np.zeros(n)
    np.maximum.at(worst, a[disagree], residual[disagree])
    np.maximum.at(worst, b[disagree], residual[disagree])
    return disagree & (residual >= worst[a]) & (residual >= worst[b])


def _least_squares(start, a, b, measured, weight, tolerance=1e-12) -> np.ndarray:
    """Minimise sum w |p_b - p_a - m|^2 by conjugate gradients on the Laplacian system
    L p = B^T W m, started from the stage positions (so unlinked tiles stay put and each
    group keeps its stage mean: CG never moves the Laplacian's null space)."""
    n = len(start)

    def laplacian(p):
        diff = weight[:, None] * (p[b] - p[a])
        out = np.zeros_like(p)
        for axis in range(3):
            out[:, axis] = (np.bincount(b, diff[:, axis], minlength=n)
                            - np.bincount(a, diff[:, axis], minlength=n))
        return out

    rhs = np.zeros_like(start)
    wm = weight[:, None] * measured
    for axis in range(3):
        rhs[:, axis] = np.bincount(b, wm[:, axis], minlength=n) - np.bincount(a, wm[:, axis], minlength=n)
    p = start.copy()
    r = rhs - laplacian(p)
    d = r.copy()
    rr = (r * r).sum(axis=0)
    limit = tolerance ** 2 * max(1.0, float((rhs * rhs).sum()))   # relative residual
    for _ in range(10 * n + 100):
        if rr.sum() <= limit:
            break
        ld = laplacian(d)
        alpha = rr / np.where((d * ld).sum(axis=0) > 0, (d * ld).sum(axis=0), 1.0)
        p += alpha * d
        r -= alpha * ld
        rr_new = (r * r).sum(axis=0)
        d = r + (rr_new / np.where(rr > 0, rr, 1.0)) * d
        rr = rr_new
    return p


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label of every tile (union-find with path halving)."""
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(a.tolist(), b.tolist()):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)])


def _place_groups(positions, start, labels, linked, exact) -> np.ndarray:
    """Translate each linked group so its mean correction is within half a voxel of zero,
    by a whole-voxel offset from its first tile (measured whole-voxel offsets stay whole,
    as fusion puts a tile placed by its position on whole voxels). A group of `exact`
    tiles only (placed by affines: fusion honours sub-voxel positions) keeps its mean
    correction at zero exactly: rounded, it would move by up to half a voxel with no
    measurement behind it (trial K); a group that mixes both is rounded, for the tiles
    fusion rounds (review G). Unlinked tiles keep their stage positions exactly."""
    out = start.copy()
    for label in np.unique(labels[linked]):
        members = labels == label
        relative = positions[members] - positions[np.flatnonzero(members)[0]]
        shift = (start[members] - relative).mean(axis=0)
        out[members] = relative + (shift if exact[members].all() else np.round(shift))
    return out
