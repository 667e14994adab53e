"""Stitching as a job step: what is registered, where the results go, and the report.

Registration runs on the first timepoint's `stitching.channel`; the positions it finds
are applied to every channel and timepoint (they share one tile geometry). Results sit
next to each input tile JSON, named as stitching-spark names them:
`tiles.json` → `tiles-final.json` (refined positions, same format), plus
`tiles-stitching.json` (the report) and `tiles-stitching.png` (the picture) next to the
registered channel's tile JSON. A BigStitcher project is registered view group by view
group (`projects`), and its result is `<name>-stitched.xml`. Pure: `pipelines.driver.stitch` measures pairs on
an executor and calls these.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from pipelines.config import JobConfig
from pipelines.errors import ConfigError
from pipelines.registration import Link, PairOptions, Solution, projects, reuse
from pipelines.registration.projects import ProjectReference
from pipelines.storage import S3Options, beside_store
from pipelines.storage import uri as uris
from pipelines.storage.probe import check_writable_beside
from pipelines.tiles import TileSet, check_same_geometry, read_tile_json
from pipelines.tiles.bigstitcher import read_project
from pipelines.tiles.remote import read_text
from pipelines.tiles.tilejson import tile_json_text


def pair_options(config: JobConfig) -> PairOptions:
    s = config.stitching
    return PairOptions(search=s.search, downsample=s.downsample, min_overlap=s.min_overlap)


def final_path(tile_json: str) -> str:
    return uris.sibling(tile_json, "-final.json")


@dataclass(frozen=True)
class Target:
    """What is registered: the tile set measured (a project's views in their own pixel
    spaces, `projects.reference`), every (timepoint, channel) tile set, and for a
    BigStitcher project what maps the solution back to its XML."""

    reference: TileSet
    every: tuple[tuple[TileSet, ...], ...]
    project: ProjectReference | None = None

    def pairs(self, found: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs to measure: a project's views only with views of their own group."""
        return found if self.project is None else self.project.same_group(found)


def registration_target(config: JobConfig) -> Target:
    """The registered channel of the first timepoint, from tile JSONs or a project."""
    s3 = config.s3_options()
    channel = config.stitching.channel
    if config.is_project:
        project = read_project(config.tiles, s3, {k: list(v) for k, v in config.views})
        check_same_geometry(project.tiles)
        if channel >= len(project.channels):
            raise ConfigError(f"stitching.channel: the project has {len(project.channels)} "
                              f"channel(s) ({', '.join(project.channel_names)}), found {channel}")
        ref = projects.reference(project, channel)
        return Target(ref.tiles, project.tiles, ref)
    tiles = tuple(tuple(read_tile_json(p, s3) for p in row) for row in config.inputs)
    check_same_geometry(tiles)
    return Target(tiles[0][channel], tiles)


def refined(tiles: TileSet, positions: dict[int, tuple[float, float, float]]) -> TileSet:
    """`tiles` with the solved positions (files, sizes and types unchanged)."""
    return TileSet(tuple(replace(t, position=positions[t.index]) for t in tiles), tiles.source)


@dataclass(frozen=True)
class StitchOutcome:
    """A registration's result: the refined tile JSONs (or stitched XML) and the report
    written beside them, computed now or reused from an earlier run."""

    solution: Solution | None   # None when the last registration's results were reused
    report: dict
    tile_jsons: tuple[tuple[str, ...], ...]   # the -final.json files, timepoints × channels
    report_path: str
    picture_path: str
    reused: bool = False        # the refined files of an earlier run, unchanged

    def stitched(self, config: JobConfig) -> JobConfig:
        """`config` reading the refined tile JSONs (or the stitched XML) instead of the
        stage positions (channel names still come from the original JSONs' names)."""
        if config.is_project:
            return replace(config, inputs=self.tile_jsons)
        names = config.channel_names or tuple(uris.stem(p) for p in config.inputs[0])
        return replace(config, inputs=self.tile_jsons, channel_names=names)


def report(reference: TileSet, solution: Solution, unmatched: list[tuple[int, int]],
           config: JobConfig, seconds: float) -> dict:
    """The report: options, totals, per-pair measurements and per-tile corrections."""
    kept = [link for link in solution.links if link.kept]
    weak = [link for link in solution.links if link.shift.score < config.stitching.min_score]
    corrections = {t.index: [round(p - s, 3) for p, s in zip(solution.positions[t.index], t.position)]
                   for t in reference}
    sizes = [float(np.linalg.norm(c)) for c in corrections.values()]
    measured = len(solution.links)
    return {
        "tiles_json": reference.source,
        "channel": config.stitching.channel,
        "options": asdict(config.stitching),
        "tiles": len(reference),
        # measured = kept + below_min_score (never used) + dropped (used, then dropped by
        # the residual test as inconsistent with the solution)
        "pairs": {"measured": measured, "kept": len(kept), "below_min_score": len(weak),
                  "dropped": measured - len(kept) - len(weak), "unmatched": len(unmatched)},
        "solve": {"rounds": solution.rounds, "groups": solution.groups,
                  "unlinked_tiles": list(solution.unlinked)},
        "residual_voxels": _stats([link.residual for link in kept]),
        "correction_voxels": _stats(sizes),
        "seconds": {"pairs": round(seconds, 3),
                    "per_pair": round(seconds / max(1, measured + len(unmatched)), 3)},
        "pair_results": [
            {"a": link.shift.a, "b": link.shift.b, "stage": list(link.shift.stage),
             "measured": list(link.shift.measured),
             "correction": [round(v, 3) for v in link.shift.correction], "score": link.shift.score,
             "overlap_voxels": link.shift.overlap, "residual": link.residual, "kept": link.kept,
             "status": _status(link, config.stitching.min_score)}
            for link in solution.links],
        "unmatched_pairs": [list(p) for p in unmatched],
        "tile_results": [{"index": t.index, "stage": list(t.position),
                          "position": list(solution.positions[t.index]),
                          "correction": corrections[t.index]} for t in reference],
    }


def _status(link: Link, min_score: float) -> str:
    if link.shift.score < min_score:
        return "below min_score"
    return "kept" if link.kept else "dropped as inconsistent"


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def layout_picture(reference: TileSet, solution: Solution,
                   unmatched: list[list[int]] | None = None, min_score: float = -1.0) -> bytes:
    """Tiles at stage and at solved positions, pairs coloured by residual, pairs without a
    match or scoring below `min_score` (never used) in grey."""
    from pipelines.report.pictures import (
        tile_layout_png,  # matplotlib only where pictures are drawn
    )
    before = [(t.index, t.position, t.size) for t in reference]
    after = [(t.index, solution.positions[t.index], t.size) for t in reference]
    links = [(link.shift.a, link.shift.b, link.residual, link.kept) for link in solution.links
             if link.shift.score >= min_score]
    unused = [*(unmatched or ()), *((link.shift.a, link.shift.b) for link in solution.links
                                    if link.shift.score < min_score)]
    return tile_layout_png(before, after, links, title=f"registration of {Path(reference.source).name}",
                           unmatched=[(int(a), int(b)) for a, b in unused])


def report_path(config: JobConfig) -> str:
    """Where the stitching report goes: beside the registered channel's tile JSON (the
    first timepoint's), or beside the project."""
    source = config.tiles if config.is_project else config.inputs[0][config.stitching.channel]
    return uris.sibling(source, "-stitching.json")


def check_results_writable(config: JobConfig) -> None:
    """Refuse, before any pair is measured, a registration whose results cannot be written
    beside its inputs: found at the end, every pair's measurement would be lost."""
    results = [uris.sibling(config.tiles, "-stitched.xml")] if config.is_project else \
        [final_path(p) for row in config.inputs for p in row]
    check_writable_beside([report_path(config), *results], "stitching's result "
                          f"({uris.name(results[0])}, its report)", config.s3_options())


def write_results(config: JobConfig, target: Target, solution: Solution, doc: dict) -> StitchOutcome:
    """Write each -final.json (a project: the -stitched.xml), the report and the picture;
    return where they went. The report records a checksum of each refined file in
    `doc["reuse"]["results"]`, so a later run can tell they are still as written."""
    s3 = config.s3_options()
    reference = target.reference
    finals: list[tuple[str, ...]] = []
    written: dict[str, bytes] = {}
    if target.project is not None:
        text = read_text(config.tiles, s3) if uris.is_remote(config.tiles) else Path(config.tiles).read_text()
        path = uris.sibling(config.tiles, "-stitched.xml")
        written[path] = projects.stitched_xml(text, target.project, solution.positions)
        finals.append((path,))
    else:
        for row, paths in zip(target.every, config.inputs):
            row_finals = tuple(final_path(p) for p in paths)
            written |= {f: _final_text(ts, solution, p) for ts, p, f in zip(row, paths, row_finals)}
            finals.append(row_finals)
    for path, data in written.items():
        _put(path, data, s3)
    doc.setdefault("reuse", {})["results"] = reuse.checksums(written)
    report = _put(report_path(config), (json.dumps(doc, indent=1) + "\n").encode(), s3)
    picture = _put(uris.sibling(report, ".png"),
                   layout_picture(reference, solution, doc.get("unmatched_pairs"),
                                  config.stitching.min_score), s3)
    return StitchOutcome(solution, doc, tuple(finals), report, picture)


def reused(config: JobConfig, target: Target, current: str) -> StitchOutcome | None:
    """The last registration's outcome when its report holds the `current` fingerprint
    and its refined files are as it wrote them; None when registration must run."""
    s3 = config.s3_options()
    path = report_path(config)
    data = reuse.read(path, s3)
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:   # a damaged report: register again, which rewrites it
        return None
    if doc is None or not reuse.still_valid(doc, current, s3):
        return None
    if config.is_project:
        finals: tuple[tuple[str, ...], ...] = ((uris.sibling(config.tiles, "-stitched.xml"),),)
    else:
        finals = tuple(tuple(final_path(p) for p in row) for row in config.inputs)
    if any(p not in doc["reuse"]["results"] for row in finals for p in row):
        return None
    picture = uris.sibling(path, ".png")
    return StitchOutcome(None, doc, finals, path, picture, reused=True)


def _final_text(tiles: TileSet, solution: Solution, path: str) -> bytes:
    base = None if "://" in path else Path(path).resolve().parent
    return tile_json_text(refined(tiles, solution.positions), base).encode()


def _put(path: str, data: bytes, s3: S3Options | None) -> str:
    beside_store(path, s3).put(uris.name(path), data)
    return path
