"""The driver's side of the illumination corrections, over any executor.

Flatfield: per channel, the tiles (of every timepoint) are cut into at most MAX_TASKS
groups; each executor task reduces its group to per-cell histograms
(`tasks.tile_statistics`), the driver adds them, fits S and T (`estimate.fit_fields`)
and writes the fields and a picture. Intensity matching: every overlapping pair of every
channel is measured on the executor (`tasks.measure_intensity`), the driver solves the
per-tile coefficients (`intensity.solve_intensities`) and writes them as
`<tile-json-stem>-intensity.json` (a project's: `<stem>-intensity-c<channel id>.json`). Every
check runs before the first task.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

from pipelines.config import JobConfig
from pipelines.config.illumination import AUTO
from pipelines.execute.executor import Batch, Executor
from pipelines.geometry import Box
from pipelines.illumination import matched
from pipelines.illumination.correct import Correction
from pipelines.illumination.estimate import METHOD as ESTIMATION_METHOD
from pipelines.illumination.estimate import (
    Binning,
    Fields,
    fit_fields,
    implausible,
    impossible_offset,
)
from pipelines.illumination.fields import (
    FlatfieldError,
    earlier_estimate,
    plane_at,
    write_fields,
)
from pipelines.illumination.intensity import solve_intensities
from pipelines.illumination.plan import (
    PROJECT_FLATFIELD,
    check_estimable,
    fields_to_estimate,
    flatfield_folders,
    with_estimated_flatfield,
    write_coefficients,
)
from pipelines.illumination.tasks import (
    MIN_VOXELS,
    IntensityJob,
    StatisticsJob,
    measure_intensities,
    pairs_measured,
    tile_statistics,
    tiles_reduced,
)
from pipelines.plan import read_tiles
from pipelines.registration import find_pairs
from pipelines.registration.pairs import PairOptions
from pipelines.report.pictures import projections_png
from pipelines.report.progress import Progress
from pipelines.storage.probe import check_writable_beside
from pipelines.storage.uri import name as uri_name
from pipelines.tiles import TileSet, read_region

MAX_TASKS = 64    # statistics tasks per channel: bounds what the driver collects
PAIRS_PER_TASK = 8  # pairs one intensity task measures (a pair takes milliseconds)


@dataclass(frozen=True)
class FlatfieldRun:
    """What `estimate_flatfield` did: where it wrote each channel's fields, from how many
    tiles, in how long."""

    folders: tuple[str, ...]   # per channel, where the fields were written
    tiles: int                 # tiles read, all channels
    seconds: float             # estimation time, all channels


def estimate_flatfield(config: JobConfig, executor: Executor, stream: TextIO = sys.stderr,
                       folders: tuple[str, ...] | None = None) -> FlatfieldRun:
    """Estimate every channel's fields and write them to `folders` (default: what
    fusion.flatfield names, else beside each channel's tile JSON)."""
    if config.is_project:
        raise FlatfieldError(PROJECT_FLATFIELD.format(what="flatfield estimation"))
    s3 = config.s3_options()
    tiles = read_tiles(config, s3)
    channels = [tuple(row[c] for row in tiles) for c in range(len(tiles[0]))]
    # default: beside each tile JSON (in its bucket too), as "auto" puts them
    folders = folders or flatfield_folders(config) or flatfield_folders(replace(config, flatfield=(AUTO,)))
    check_estimable(channels, list(config.inputs[0]), config.flatfield_per_slice)
    check_writable_beside(folders, "the flatfield", s3)   # each folder is made beside its JSON
    executor.start()   # Spark's start-up is counted apart, not as estimation (review G)
    began, count, estimated = time.perf_counter(), 0, []
    for c, tilesets in enumerate(channels):
        fields, problem, why = _estimate_channel(tilesets, executor, s3, stream, config.flatfield_per_slice)
        if problem:   # before any channel's fields are written
            raise FlatfieldError(
                f"{config.inputs[0][c]}: the flatfield estimated from {sum(len(ts) for ts in tilesets)} "
                f"tiles is not usable: {problem}; {why}; nothing was written")
        estimated.append(fields)
    for c, (tilesets, folder, fields) in enumerate(zip(channels, folders, estimated)):
        count += sum(len(ts) for ts in tilesets)
        _write(folder, fields, tilesets, config.inputs[0][c], time.perf_counter() - began, s3)
        depths = f", {fields.gain.shape[0]} groups of slices" if fields.gain.ndim == 3 else ""
        stream.write(f"flatfield of {uri_name(config.inputs[0][c])}: {folder} (S {fields.gain.min():.3f}"
                     f"-{fields.gain.max():.3f}, T {fields.offset.mean():.1f} mean{depths})\n")
    return FlatfieldRun(tuple(folders), count, time.perf_counter() - began)


def _estimate_channel(tilesets: tuple[TileSet, ...], executor: Executor, s3,
                      stream: TextIO, per_slice: bool = False) -> tuple[Fields, str, str]:
    """The channel's fields, what makes them unusable ('' when nothing does) and the
    likely cause with what would help."""
    first = tilesets[0].tiles[0]
    binning = Binning.for_tiles(first.size[:2], first.dtype, first.size[2] if per_slice else 0)
    # the driver holds every task's histograms at once: groups of slices mean fewer tasks
    tasks = max(1, MAX_TASKS // binning.groups)
    items = [(t, group) for t, ts in enumerate(tilesets) for group in _groups(ts, len(tilesets), tasks)]
    batch = Batch(tile_statistics, StatisticsJob(tilesets, binning, s3), items,
                  f"flatfield statistics of {sum(len(ts) for ts in tilesets)} tiles",
                  units=tiles_reduced)
    progress = Progress(sum(len(ts) for ts in tilesets), stream, unit="tiles", show_bytes=False)
    counts = sum((r.counts for r in executor.run(batch, progress)), np.zeros(binning.shape, np.int64))
    progress.finish()
    fields = fit_fields(counts, binning)
    problem = implausible(fields)
    if problem:
        return fields, problem, SAMPLE_STATISTICS
    return fields, impossible_offset(counts, binning, fields), UNPINNED_OFFSET


# why an estimate's S is implausible, and what helps
SAMPLE_STATISTICS = ("the tiles' pixel statistics follow the sample rather than the illumination "
                     "(more tiles, or tiles whose content differs across the field of view, are needed)")
# why its T is impossible (trial AJ: backgrounds of 6-40 photons over 12-36 tiles were told
# their statistics follow the sample, which did not fit)
UNPINNED_OFFSET = ("the tiles' darkest values do not pin the offset down (too few tiles, or a "
                   "background only a few photons above the camera's dark level); more tiles "
                   "are needed, or fields of your own in fusion.flatfield (S.tif, and T.tif "
                   "holding the camera's dark level)")


def _groups(tiles: TileSet, timepoints: int, tasks: int = MAX_TASKS) -> list[tuple[int, ...]]:
    indices = [t.index for t in tiles]
    size = -(-len(indices) * timepoints // tasks)
    return [tuple(indices[k:k + size]) for k in range(0, len(indices), size)]


def _write(folder: str, fields: Fields, tilesets, tile_json: str, seconds: float, s3) -> None:
    info = {"method": "per-pixel histogram quantiles (stitching-spark)", "tile_json": tile_json,
            "tiles": sum(len(ts) for ts in tilesets), "offset_estimated": fields.offset_estimated,
            "offset_checked": fields.offset_estimated,   # against the tiles' darkest values
            "estimation_method": ESTIMATION_METHOD,
            "reference_spread": fields.spread, "seconds": round(seconds, 3),
            "slice_groups": fields.gain.shape[0] if fields.gain.ndim == 3 else 1}
    write_fields(folder, fields, info, _picture(fields, tilesets, s3), s3)


def _picture(fields: Fields, tilesets, s3) -> bytes:
    """PNG of both fields and one slice of a middle tile before and after."""
    tile = tilesets[0].tiles[len(tilesets[0]) // 2]
    z = tile.size[2] // 2
    plane = read_region(tile, _plane(tile, z), s3)[0].astype(np.float32)
    gain, offset = plane_at(fields.gain, z, tile.size[2]), plane_at(fields.offset, z, tile.size[2])
    after = (plane - offset) / gain
    low, high = float(offset.min()), float(offset.max())
    # one dark level draws as a uniformly white panel: say its value in the title instead
    offset_label = f"T (offset): {low:.4g} everywhere" if low == high else "T (offset)"
    at = f", z {z}" if fields.gain.ndim == 3 else ""
    return projections_png([(f"S (gain){at}", gain, 1.0), (offset_label, offset, 1.0),
                            (f"tile {tile.index}, z {z}: raw", plane, 1.0),
                            ("corrected", after, 1.0)], "flatfield")


def _plane(tile, z: int) -> Box:
    return Box((0, 0, z), (tile.size[0], tile.size[1], z + 1))


def prepare_corrections(config: JobConfig, executor: Executor, stream: TextIO,
                        check: Callable[[JobConfig], object]) -> tuple[JobConfig, float]:
    """Before an export: for fusion.flatfield = "auto", estimate the fields that are
    missing (beside each tile JSON) and return the config naming the folders. When the
    corrections need executor work, `check` first validates everything else (inputs,
    output) so that a bad job fails before minutes of estimation. With [flatfield]
    enabled the fields are estimated again whether or not they exist, into the folders
    fusion.flatfield names (beside the tile JSONs when it is unset), and applied. Returns
    that config and the seconds estimation took (0 when it did not run)."""
    config = with_estimated_flatfield(config)
    folders = flatfield_folders(config)
    missing = fields_to_estimate(config)
    if missing or config.intensity == "match":
        # fields that exist are checked too: matching reads the tiles through them on
        # executors, where a missing or misshapen field fails without its cause. Matching
        # is part of the check only through fields that exist: whether its coefficients
        # can be reused is known before that work then (trial Y: it was always left out,
        # so they were measured and rewritten before a committed output was refused)
        # (made with the folders the export applies, as stitching and matching see them
        # after, so that what the check found stands for them: driver._export_on)
        check(replace(config, flatfield=(), intensity="none") if missing
              else replace(config, flatfield=folders))
    seconds = estimate_flatfield(config, executor, stream, folders).seconds if missing else 0.0
    if config.flatfield == (AUTO,) and not missing:   # trial J: reused without a word
        for path, folder in zip(config.inputs[0], folders):
            stream.write(f"flatfield of {uri_name(path)}: reused ({folder}; delete it, or "
                         f"[flatfield] enabled = true, to estimate again)\n")
            # trial T: a T above the tiles' darkest values clipped 1.8 % of them to 0
            differed = earlier_estimate(folder, config.s3_options())
            if differed:
                stream.write(f"warning: {folder} was estimated by another version of this "
                             f"tool, {differed}; [flatfield] enabled = true estimates it again\n")
    return replace(config, flatfield=folders), seconds


def match_intensities(config: JobConfig, executor: Executor, stream: TextIO = sys.stderr,
                      known: matched.Matching | None = None,
                      identities: Mapping[str, Any] | None = None) -> float:
    """Measure every overlapping pair of every channel (first timepoint) on the executor,
    solve the per-tile coefficients and write them per channel (`intensity_paths`);
    returns the seconds that took (0 when every channel's were reused). `known`: what
    decides them, when the checks before the export's work took it (used only when taken
    of this very config); else `identities`: the tile files' identities the run took
    already, by path (after stitching, the same files at refined positions)."""
    began: float | None = None   # when the first channel's measuring began
    s3 = config.s3_options()
    correction = Correction(flatfield_folders(config))
    options = PairOptions(search=(0, 0, 0), min_overlap=(2, 2, 1))
    if known is None or known.config != config:
        known = matched.matching(config, read_tiles(config, s3)[0], identities)
    channels = known.channels
    check_writable_beside([path for _, _, path, _ in channels],
                          "intensity matching's coefficients", s3)
    for c, tileset, path, fingerprint in channels:
        named = uri_name(config.inputs[0][0] if config.is_project else config.inputs[0][c])
        if config.is_project:
            named += f" (channel {tileset.channel_id})"
        if matched.matched_already(path, fingerprint, s3):
            stream.write(f"intensities of {named}: reused ({path})\n")
            continue
        if began is None:   # Spark's start-up is counted apart, not as matching (review G)
            executor.start()
            began = time.perf_counter()
        pairs = find_pairs(tileset, options)
        job = IntensityJob(tileset, correction, c, s3)
        groups = [tuple(pairs[k:k + PAIRS_PER_TASK]) for k in range(0, len(pairs), PAIRS_PER_TASK)]
        batch = Batch(measure_intensities, job, groups, f"match intensities of {len(pairs)} tile pairs",
                      units=pairs_measured)
        # trial J: 39 s without a line on S3; a larger acquisition would look hung
        progress = Progress(max(1, len(pairs)), stream, unit="intensity pairs", show_bytes=False)
        measured = [m for group in executor.run(batch, progress) for m in group if m] if pairs else []
        if pairs:
            progress.finish()
        solution = solve_intensities([t.index for t in tileset], measured)
        document = _document(solution, len(pairs)) | {"reuse": {"fingerprint": fingerprint}}
        write_coefficients(path, document, s3)
        # pairs sharing too few voxels measure nothing (trial AC: 72 pairs, "40 used,
        # 0 dropped": every corner pair of a 2D grid left out without a word)
        small = len(pairs) - len(measured)
        stream.write(f"intensities of {named}: {len(solution.used)} pairs "
                     f"used, {len(solution.dropped)} dropped" + (
                         f", {small} sharing too few voxels to compare (under {MIN_VOXELS})"
                         if small else "") + f"; {path}\n")
        if solution.unlinked:
            stream.write(f"intensities of {named}: {_unlinked(solution.unlinked)}\n")
        if solution.refused is not None:
            stream.write(f"warning: intensities of {named}: {_refused_offset(solution.refused)}\n")
        spread = _gain_spread(document)
        if spread:
            stream.write(f"warning: intensities of {named}: {spread}\n")
    return time.perf_counter() - began if began is not None else 0.0


GAIN_SPREAD = 4.0   # gains further apart than this are more likely misplaced tiles than light


def _gain_spread(document: dict) -> str:
    """A warning when the matched gains lie more than GAIN_SPREAD apart (trial L: tiles
    left at stage positions ±8 voxels off gave 0.28-8.44, without a word); '' otherwise."""
    gains = document.get("gain_range") or []
    if len(gains) != 2 or gains[0] <= 0 or gains[1] / gains[0] <= GAIN_SPREAD:
        return ""
    return (f"gains range {gains[0]:.2f}-{gains[1]:.2f} ({gains[1] / gains[0]:.1f} x): tiles "
            f"that do not meet where their positions say? Register them first ([stitching] "
            f"enabled), or check the pairs dropped in the coefficients file")


def _refused_offset(refused: tuple[float, float, float]) -> str:
    """The warning for an offset the pairs' lines gave but their medians disagreed with
    (`intensity.solve_intensities`)."""
    b, found, plain = refused
    return (f"the pairs' lines put the shared offset at {b:.1f}, where the tiles' brightness "
            f"ratios disagree by {100 * found:.1f} % (RMS) against {100 * plain:.1f} % without "
            f"one: matched without an offset. Tiles that do not meet where their positions say, "
            f"or a blank tile without a flatfield? Register them first ([stitching] enabled), "
            f"estimate a flatfield, or check the pair results in the coefficients file")


def _unlinked(tiles: tuple[int, ...]) -> str:
    """The line naming the tiles no used pair reaches."""
    which = f"tiles {', '.join(map(str, tiles))} have" if len(tiles) > 1 else f"tile {tiles[0]} has"
    return (f"{which} no usable pair (blank, constant, or background alone where the neighbour "
            f"shows structure?) and {'are kept as they were' if len(tiles) > 1 else 'is kept as it was'} "
            f"(gain 1, offset 0)")


def _document(solution, pairs: int) -> dict:
    gains = [g for g, _ in solution.coefficients.values()]
    return {"method": "per pair: median ratio, and the line of the shared voxels' spreads without "
                      "their noise; "
                      "per tile: weighted least squares of log gains (pipelines.illumination.intensity)",
            "pairs": {"overlapping": pairs, "used": len(solution.used),
                      "dropped": len(solution.dropped)},
            "shared_offset": solution.shared_offset,
            "refused_offset": ({"offset": solution.refused[0], "disagreement": solution.refused[1],
                                "disagreement_without": solution.refused[2]}
                               if solution.refused is not None else None),
            "unlinked_tiles": list(solution.unlinked),
            "gain_range": [min(gains), max(gains)] if gains else [],
            "tiles": [{"index": i, "gain": g, "offset": o}
                      for i, (g, o) in sorted(solution.coefficients.items())],
            "pair_results": [{"a": p.a, "b": p.b, "slope": p.slope, "slope_error": p.slope_error, "intercept": p.intercept,
                              "median_a": p.median_a, "median_b": p.median_b,
                              "voxels": p.voxels, "signal": p.signal, "alike": p.alike,
                              "used": p in solution.used, "offset_line_used": p in solution.offset_lines}
                             for p in solution.used + solution.dropped]}
