"""Stitching: measure tile offsets pairwise from the pixels, then solve for positions.

`pairs` finds the overlapping pairs and measures one (an executor's work), `correlate` is
the pure-array core, `solve` the driver's global optimisation, `report` the refined tile
JSON and the report. The driver runs `measure_pair` per pair on an executor; `register`
here does the same in one process (tests, small acquisitions).
"""

from __future__ import annotations

from collections.abc import Callable

from pipelines.registration.pairs import PairOptions, PairShift, find_pairs, register_pair
from pipelines.registration.solve import Link, Solution, solve
from pipelines.tiles import TileSet, read_region

__all__ = ["PairOptions", "PairShift", "Link", "Solution", "find_pairs", "register_pair",
           "solve", "register"]

# Bumped whenever measuring pairs or solving gives other positions for the same tiles and
# settings. A registration's report holds it among what decides the positions
# (`reuse.fingerprint_parts`): a report of another method is registered again, saying
# so, not reused (trial AK: the package version never changed, so the results of a
# registration before a pair pressed against the search window's edge was no match, or
# before NaN voxels were left out of a pair, were reused as this version's).
# 1: 2026-12-07 night (the reports before it hold no number).
METHOD = 1


def register(tiles: TileSet, options: PairOptions, min_score: float, max_residual: float,
             read: Callable = read_region) -> Solution:
    """Measure every pair of `tiles` in this process and solve (no Spark)."""
    index = tiles.by_index()
    shifts = [s for a, b in find_pairs(tiles, options)
              if (s := register_pair(index[a], index[b], options, read)) is not None]
    return solve({t.index: t.position for t in tiles}, shifts, min_score, max_residual)
