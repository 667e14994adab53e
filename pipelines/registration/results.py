"""Stitching as a job step: what is registered, where the results go, and the report.

Registration runs on the first timepoint's `stitching.channel`; the positions it finds
are applied to every channel and timepoint (they share one tile geometry). Results sit
next to each input tile JSON, named as stitching-spark names them:
`tiles.json` → `tiles-final.json` (refined positions, same format), plus
`tiles-stitching.json` (the report) and `tiles-stitching.png` (the picture) next to the
registered channel's tile JSON. A BigStitcher project is registered view group by view
group (`projects`), and its result is `<name>-stitched.xml`. Pure: `pipelines.registering.stitch` measures pairs on
an executor and calls these.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import JobConfig
from pipelines.config.inputs import default_channel_names
from pipelines.errors import ConfigError, OutputError
from pipelines.illumination.plan import flatfield_folders
from pipelines.registration import Link, PairOptions, Solution, find_pairs, projects, reuse
from pipelines.registration.projects import ProjectReference, Reference
from pipelines.storage import S3Options, beside_store
from pipelines.storage import uri as uris
from pipelines.storage.documents import json_if_there, read_bytes, read_if_there
from pipelines.storage.probe import check_writable_beside
from pipelines.tiles import TileSet, check_same_geometry, read_tile_jsons
from pipelines.tiles.bigstitcher import read_project
from pipelines.tiles.tilejson import tile_json_text


def pair_options(config: JobConfig) -> PairOptions:
    s = config.stitching
    return PairOptions(search=s.search, downsample=s.downsample, min_overlap=s.min_overlap)


def final_path(tile_json: str) -> str:
    return uris.sibling(tile_json, "-final.json")


@dataclass(frozen=True)
class Target:
    """What is registered: the registered channel's tiles in their own pixel spaces
    (`projects.Reference`: tiles placed by affines, a project's views or a tile JSON's
    `transform`s, at L⁻¹ · t), every (timepoint, channel) tile set, and for a BigStitcher
    project what maps the solution back to its XML."""

    frame: Reference
    every: tuple[tuple[TileSet, ...], ...]
    options: PairOptions
    project: ProjectReference | None = None

    @property
    def reference(self) -> TileSet:
        """The tiles measured and solved, in their pixel spaces."""
        return self.frame.tiles

    @cached_property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """The pairs to measure (those that may overlap, of one linear part), found when
        first asked for — after the check for a reusable registration, which needs none
        (finding them takes seconds at 10 000 tiles) — and refused in one line when there
        are none: nothing could be registered (before Spark starts and anything is written)."""
        pairs = tuple(self.frame.same_group(find_pairs(self.reference, self.options)))
        if pairs:
            return pairs
        o = self.options
        some = (f"views of the {len(self.reference)} that share a linear part (angle)"
                if self.project is not None else f"of the {len(self.reference)} tiles")
        raise ConfigError(
            f"stitching: no two {some} can overlap by "
            f"stitching.min_overlap {list(o.min_overlap)} voxels within stitching.search "
            f"{list(o.search)} voxels of their stage positions, so nothing can be registered: "
            f"give a larger stitching.search if the stage positions are farther off (an "
            f"export at the stage positions sets [stitching] enabled = false)")


def registration_target(config: JobConfig) -> Target:
    """The registered channel of the first timepoint, from tile JSONs or a project."""
    s3 = config.s3_options()
    channel = config.stitching.channel
    if config.is_project:
        project = read_project(config.tiles, s3, {k: list(v) for k, v in config.views})
        check_same_geometry(project.tiles)
        names = project.channel_names   # of the channels input.views selects
        if isinstance(channel, str) and channel in names:
            channel = names.index(channel)
        if isinstance(channel, str) or channel >= len(project.channels):
            holder = "the views input.views selects hold" if config.views else "the project has"
            raise ConfigError(f"stitching.channel: {holder} {len(project.channels)} "
                              f"channel(s) ({', '.join(names)}): expected an index below "
                              f"{len(project.channels)} or one of these names, found {channel!r}")
        ref = projects.reference(project, channel)
        return Target(ref, project.tiles, pair_options(config), ref)
    tiles = read_tile_jsons(config.inputs, s3)
    check_same_geometry(tiles)
    return Target(projects.in_pixel_space(tiles[0][_index(channel)]), tiles, pair_options(config))


def _index(channel: int | str) -> int:
    """The registered channel of tile JSONs: always an index (their names are resolved
    when the job is read)."""
    assert isinstance(channel, int), channel
    return channel


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
    applied: tuple[str, ...] = ()   # reused positions, new refined JSONs for these (`reapply`)

    def stitched(self, config: JobConfig) -> JobConfig:
        """`config` reading the refined tile JSONs (or the stitched XML) instead of the
        stage positions (channel names still come from the original JSONs' names, and
        fusion.flatfield "auto" still means the fields beside them, where estimation
        writes them)."""
        if config.is_project:
            return replace(config, inputs=self.tile_jsons)
        names = config.channel_names or default_channel_names(config.inputs[0])
        return replace(config, inputs=self.tile_jsons, channel_names=names,
                       flatfield=flatfield_folders(config))


def report(reference: TileSet, solution: Solution, unmatched: list[tuple[int, int]],
           config: JobConfig, seconds: float, resumed: int = 0) -> dict:
    """The report: options, totals, per-pair measurements and per-tile corrections.
    `resumed`: pairs an interrupted run had measured (not in `seconds`)."""
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
                  "dropped": measured - len(kept) - len(weak), "unmatched": len(unmatched),
                  "resumed": resumed},
        "solve": {"rounds": solution.rounds, "groups": solution.groups,
                  "unlinked_tiles": list(solution.unlinked),
                  "contradicted_tiles": list(solution.contradicted)},
        "residual_voxels": _stats([link.residual for link in kept]),
        "correction_voxels": _stats(sizes),
        "seconds": {"pairs": round(seconds, 3),
                    "per_pair": round(seconds / max(1, measured + len(unmatched) - resumed), 3)},
        "pair_results": [
            {"a": link.shift.a, "b": link.shift.b, "stage": list(link.shift.stage),
             "measured": list(link.shift.measured),
             "correction": [round(v, 3) for v in link.shift.correction], "score": link.shift.score,
             "overlap_voxels": link.shift.overlap, "residual": link.residual, "kept": link.kept,
             "status": _status(link, config.stitching.min_score)}
            for link in solution.links],
        "unmatched_pairs": [list(p) for p in unmatched],
        # a project's views carry their setup in `view` (trial K: tile numbers alone could
        # not be mapped back to setups)
        "tile_results": [{"index": t.index, **({"view": t.label} if t.label else {}),
                          "stage": list(t.position), "position": list(solution.positions[t.index]),
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
    source = config.tiles if config.is_project else config.inputs[0][_index(config.stitching.channel)]
    return _report_beside(source)


def _report_beside(source: str) -> str:
    """The stitching report of a registration of `source` (a tile JSON or the project)."""
    return uris.sibling(source, "-stitching.json")


def refined_paths(config: JobConfig) -> tuple[tuple[str, ...], ...]:
    """Where registration writes its results: each tile JSON's -final.json (timepoints ×
    channels), or the project's -stitched.xml."""
    if config.is_project:
        return ((uris.sibling(config.tiles, "-stitched.xml"),),)
    return tuple(tuple(final_path(p) for p in row) for row in config.inputs)


def check_results_writable(config: JobConfig) -> None:
    """Refuse, before any pair is measured, a registration whose results cannot be written
    beside its inputs: found at the end, every pair's measurement would be lost."""
    results = [p for row in refined_paths(config) for p in row]
    check_writable_beside([report_path(config), *results], "stitching's result "
                          f"({uris.name(results[0])}, its report)", config.s3_options())


def last_report(config: JobConfig) -> dict | None:
    """The report of the last registration of these tiles, None when there is none (or it
    is damaged: registering again rewrites it)."""
    return _report_at(report_path(config), config.s3_options())


def _report_at(path: str, s3: S3Options | None) -> dict | None:
    doc = json_if_there(path, s3)
    return doc if isinstance(doc, dict) else None


def _recorded(doc: dict | None, key: str) -> dict[str, str]:
    """`doc["reuse"][key]` (refined file → checksum), {} where a report lacks it."""
    kept = (doc or {}).get("reuse")
    found = kept.get(key) if isinstance(kept, dict) else None
    return found if isinstance(found, dict) else {}


def written_before(config: JobConfig) -> dict[str, set[str]]:
    """Refined file → the checksums this tool's registrations recorded writing there: the
    results and the earlier results kept by the report beside each channel's tile JSON
    (first timepoint; a project: its one report). Every channel's, as registering another
    channel rewrites the same refined files (trial I: switching stitching.channel was
    refused as if they had been edited)."""
    s3 = config.s3_options()
    reports = [report_path(config)] if config.is_project else \
        [_report_beside(p) for p in config.inputs[0]]
    found: dict[str, set[str]] = {}
    for path in reports:
        doc = _report_at(path, s3)
        for key in ("results", "earlier"):
            for refined, checksum in _recorded(doc, key).items():
                found.setdefault(refined, set()).add(checksum)
    return found


def check_results_replaceable(config: JobConfig) -> None:
    """Refuse, before any pair is measured, to replace a refined file that is not as one of
    this tool's registrations wrote it (`written_before`): edited by hand, refined in
    BigStitcher, or written by stitching-spark. Registering would overwrite it;
    `stitching.force` means to."""
    if config.stitching.force:
        return
    recorded = written_before(config)
    # a result recorded under another path (the acquisition's folder moved or copied:
    # trial W) is still one this tool wrote
    anywhere = set().union(*recorded.values())
    s3 = config.s3_options()
    for path in (p for row in refined_paths(config) for p in row):
        data = read_if_there(path, s3)
        if data is not None and reuse.digest(data) not in anywhere:
            last = last_report(config)
            earlier = (f"; its report ({report_path(config)}) is an earlier version's, which "
                       f"did not record what it wrote" if last and not _recorded(last, "results")
                       else "")
            raise OutputError(
                f"stitching: {path} is not as this tool's registrations wrote it (edited, "
                f"or written by another tool{earlier}), and registering would replace it: "
                f"move it away, or --set stitching.force=true replaces it")


def draw_results(target: Target, solution: Solution, doc: dict, config: JobConfig) -> bytes:
    """The registration's picture (PNG bytes), drawn before anything is written
    (`write_results`)."""
    return layout_picture(target.reference, solution, doc.get("unmatched_pairs"),
                          config.stitching.min_score)


def write_results(config: JobConfig, target: Target, solution: Solution, doc: dict,
                  drawn: bytes) -> StitchOutcome:
    """Write each -final.json (a project: the -stitched.xml), the report and the picture
    `drawn` (`draw_results`); return where they went. The report records a checksum of
    each refined file in `doc["reuse"]["results"]`, so a later run can tell they are
    still as written. They belong together: the caller holds stops back while they are
    written (`errors.signals_deferred`)."""
    report = _write_refined(config, target, solution.positions, doc)
    picture = _put(uris.sibling(report, ".png"), drawn, config.s3_options())
    return StitchOutcome(solution, doc, refined_paths(config), report, picture)


def reapply(config: JobConfig, target: Target, positions: dict[int, tuple[float, float, float]],
            last: dict, doc_reuse: dict, applied: tuple[str, ...]) -> StitchOutcome:
    """Write the refined JSONs of tile JSONs at the `positions` the `last` registration
    found (`reuse.reapplicable`: what it measured is unchanged), and its report again with
    the new fingerprint (`doc_reuse`); `applied`: the tile JSONs new or changed since.
    The picture stays as that registration drew it."""
    doc = {**last, "reuse": doc_reuse}
    report = _write_refined(config, target, positions, doc)
    return StitchOutcome(None, doc, refined_paths(config), report,
                         uris.sibling(report, ".png"), reused=True, applied=applied)


def _write_refined(config: JobConfig, target: Target, positions: dict[int, tuple[float, float, float]],
                   doc: dict) -> str:
    """Write every refined file at `positions`, then the report recording their checksums;
    return the report's path."""
    s3 = config.s3_options()
    finals = refined_paths(config)
    written: dict[str, bytes] = {}
    if target.project is not None:
        text = read_bytes(config.tiles, s3).decode()
        path = finals[0][0]
        earlier = read_if_there(path, s3) if config.views else None   # other views' results
        written[path] = projects.stitched_xml(text, target.project, positions,
                                              earlier.decode() if earlier else None)
    else:
        for row, paths, row_finals in zip(placed(target, positions), config.inputs, finals):
            written |= {f: _final_text(ts, p) for ts, p, f in zip(row, paths, row_finals)}
    # what the last report beside this one recorded of files not written now (another
    # subset of timepoints: trial I) stays recorded as this tool's, for check_results_replaceable
    last = _report_at(report_path(config), s3)
    kept = {**_recorded(last, "earlier"), **_recorded(last, "results")}
    for path, data in written.items():
        _put(path, data, s3)
    doc.setdefault("reuse", {})["results"] = reuse.checksums(written)
    doc["reuse"]["earlier"] = {p: c for p, c in kept.items() if p not in written}
    return _put(report_path(config), (json.dumps(doc, indent=1) + "\n").encode(), s3)


@dataclass(frozen=True)
class LastRegistration:
    """What decides whether a registration runs (`last_registration`)."""

    parts: dict                   # the fingerprint's parts of what it registers now
    last: dict | None             # the last registration's report
    earlier: StitchOutcome | None  # its outcome, when it still holds (`reused`)
    # its positions, when only tile JSONs it does not measure changed (`reuse.reapplicable`)
    positions: dict[int, tuple[float, float, float]] | None = None


def last_registration(config: JobConfig, target: Target,
                      identities: Mapping[str, Any] | None = None) -> LastRegistration:
    """Whether `target` is registered again: the last registration's outcome when it still
    holds, else its positions when they place the tile JSONs that changed; neither with
    `stitching.force`. The export, `tile-stitch` and the dry run decide with this.
    `identities`: the tile files' identities this run took already, by path."""
    parts = reuse.fingerprint_parts(config, target, config.s3_options(), identities)
    last = last_report(config)
    if config.stitching.force:
        return LastRegistration(parts, last, None)
    earlier = reused(config, last, reuse.fingerprint(parts))
    positions = None
    if earlier is None and not config.is_project:
        positions = reuse.reapplicable(last, parts, target.reference.source)
        if positions is not None and set(positions) != {t.index for t in target.reference}:
            positions = None   # a report that does not describe these tiles
    return LastRegistration(parts, last, earlier, positions)


def placed(target: Target, positions: dict[int, tuple[float, float, float]]
           ) -> tuple[tuple[TileSet, ...], ...]:
    """Every (timepoint, channel) tile set at the registered `positions`."""
    return tuple(tuple(projects.moved(ts, target.frame, positions) for ts in row) for row in target.every)


def reused(config: JobConfig, last: dict | None, current: str) -> StitchOutcome | None:
    """The last registration's outcome (`last`, its report) when that holds the `current`
    fingerprint and its refined files are as it wrote them; None when registration must
    run."""
    if last is None or not reuse.still_valid(last, current, config.s3_options()):
        return None
    finals = refined_paths(config)
    if any(p not in last["reuse"]["results"] for row in finals for p in row):
        return None
    path = report_path(config)
    return StitchOutcome(None, last, finals, path, uris.sibling(path, ".png"), reused=True)


def _final_text(tiles: TileSet, path: str) -> bytes:
    base = None if "://" in path else Path(path).resolve().parent
    return tile_json_text(tiles, base).encode()


def _put(path: str, data: bytes, s3: S3Options | None) -> str:
    beside_store(path, s3).put(uris.name(path), data)
    return path
