"""The run report: a JSON summary and pictures, beside the dataset (never inside it).

After a commit the driver writes `<name>.report/` next to the container (`volume.report/`
beside `volume/`, on a filesystem or S3):
- `summary.json`: what was written, how fast, where, and the stitching totals if it ran;
- `projections.png`: a maximum-intensity projection along z of each channel (first
  timepoint), from the finest pyramid level no wider than `PROJECTION_WIDTH`, read back
  from the stored objects slab by slab (bounded memory at any size); not drawn when that
  level exceeds `PROJECTION_BYTES` or `PROJECTION_OBJECTS`;
- `layout.png`: the tiles at the positions they were fused at;
- `progress.png`: blocks completed over time (from the ledger parts' finish times);
- `stitching-before-after.png`, when registration preceded the export: where four tiles
  meet, fused at the stage and at the registered positions (`pipelines.report.seams`);
  only for tiles placed by translations (summary.json says why it is missing otherwise).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipelines.commit.publish import CommitSummary
from pipelines.commit.records import Sidecars
from pipelines.execute import readback
from pipelines.formats import format_module
from pipelines.formats.objects import object_grid
from pipelines.geometry import Box, voxel_count
from pipelines.plan import ExportPlan
from pipelines.storage import Store
from pipelines.storage import uri as uris
from pipelines.tiles import TileSet

PROJECTION_WIDTH = 1024     # voxels: the finest level at most this wide (x and y) is projected
PROJECTION_BYTES = 512 * 2**20   # per channel: a larger level is not read back (no picture)
# per channel: nor one of more objects. The driver reads each one; with tiny chunks a
# level's million objects took 100 s of driver time (benchmarks/scale_run.py).
PROJECTION_OBJECTS = 50_000


@dataclass(frozen=True)
class RunReport:
    """Where `write_run_report` put the run report (summary.json and pictures), for the
    console summary."""

    folder: str                    # where the report is, as the user named the output
    files: tuple[str, ...]         # names inside it


def report_folder(plan: ExportPlan) -> str:
    return Sidecars.of(plan.output.uri).report


def write_run_report(plan: ExportPlan, summary: CommitSummary,
                     finished: Sequence[tuple[float, int]], store: Store, beside: Store,
                     began: float, facts: dict, stitching: dict | None = None) -> RunReport:
    """Draw the pictures and write the summary; `finished` holds (time.time(), blocks) per
    ledger part, `began` is the run's start (time.time()), `facts` extra summary entries
    (timings, master, stitching). `stitching`, the stitching report when registration
    preceded the export, adds the before/after seam picture."""
    from pipelines.report.pictures import (  # matplotlib here only
        progress_png,
        projections_png,
        tile_layout_png,
    )
    folder = report_folder(plan)
    images = projections(plan, store)
    pictures = {} if images is None else {
        "projections.png": projections_png(
            images, title=projections_title(plan))}
    if images is None:
        facts = {**facts, "projections": f"not drawn: no pyramid level is at most "
                 f"{PROJECTION_WIDTH} voxels wide, {PROJECTION_BYTES // 2**20} MiB and "
                 f"{PROJECTION_OBJECTS:,} objects (set output.levels = \"auto\")"}
    pictures |= {
        "layout.png": tile_layout_png([_layout_row(t) for t in plan.tiles[0][0]],
                                      None, [], title="tiles as fused"),
        "progress.png": progress_png([max(0.0, t - began) for t, _ in finished],
                                     plan.task_plan.blocks, title="blocks completed",
                                     weights=[n for _, n in finished]),
    }
    stage = stage_tiles(plan, stitching) if stitching else None
    if stage is not None:
        from pipelines.report.seams import seam_png
        pictures["stitching-before-after.png"] = seam_png(stage, plan.tiles[0][0], plan.s3)
    elif stitching:
        affine = any(t.transform is not None for t in plan.tiles[0][0])
        facts = {**facts, "stitching-before-after": "not drawn: " + (
            "it is drawn only for tiles placed by translations, and these views are placed "
            "by affine transforms (calibration, rotation or shear)" if affine else
            "the stitching report holds no stage position of some fused tile")}
    for name, data in pictures.items():
        beside.put(f"{folder}/{name}", data)
    doc = {"dataset": summary.to_dict(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           **facts, "pictures": sorted(pictures)}
    beside.put(f"{folder}/summary.json", (json.dumps(doc, indent=1, default=str) + "\n").encode())
    return RunReport(uris.join(uris.parent(plan.output.uri), folder), ("summary.json", *sorted(pictures)))


def stage_tiles(plan: ExportPlan, stitching: dict) -> TileSet | None:
    """The fused tiles (first channel and timepoint) back at the stage positions the
    stitching report records; None for BigStitcher views (placed by affines, registered
    in their own pixel spaces) or a report without per-tile results."""
    tiles = plan.tiles[0][0]
    stage = {r["index"]: tuple(r["stage"]) for r in stitching.get("tile_results", ())}
    if any(t.transform is not None or t.index not in stage for t in tiles):
        return None
    return replace(tiles, tiles=tuple(replace(t, position=stage[t.index]) for t in tiles))


def projection_level(plan: ExportPlan) -> int:
    """The finest level whose x and y fit in PROJECTION_WIDTH (else the coarsest)."""
    for level, (x, y, _) in enumerate(plan.output.shapes):
        if max(x, y) <= PROJECTION_WIDTH:
            return level
    return plan.output.levels - 1


def projections(plan: ExportPlan, store: Store) -> list[tuple[str, np.ndarray, float, float]] | None:
    """(label, maximum along z (y, x), y/x voxel-size ratio, µm per pixel along x) per
    channel, first timepoint; None when even the coarsest level is too large to read back
    on the driver."""
    out, level = plan.output, projection_level(plan)
    fmt = format_module(out.format)
    x, y, z = out.shapes[level]
    objects = voxel_count(object_grid(out.array(0, 0, level)).counts)
    if x * y * z * np.dtype(out.base.dtype).itemsize > PROJECTION_BYTES or objects > PROJECTION_OBJECTS:
        return None
    depth = out.base.chunks[2]
    images = []
    for c in range(out.channels):
        spec = out.array(0, c, level)
        image = np.zeros((y, x), dtype=spec.np_dtype)
        for z0 in range(0, z, depth):   # one chunk layer at a time: memory stays bounded
            slab = readback.read_region(fmt, spec, store, Box((0, 0, z0), (x, y, min(z, z0 + depth))),
                                        out.lead_index(0, c))
            np.maximum(image, slab.max(axis=0), out=image)
        name = plan.channel_names[c] if c < len(plan.channel_names) else str(c)
        images.append((f"channel {name}, {_level_words(plan, level)}", image,
                       spec.resolution[1] / spec.resolution[0], spec.resolution[0]))
    return images


def _level_words(plan: ExportPlan, level: int) -> str:
    """Which pyramid level a picture shows, in words a microscopist reads without help."""
    if level == 0:
        return "full resolution (pyramid level 0)"
    fx, fy, _ = plan.output.cumulative(level)
    return f"pyramid level {level} ({fx} × {fy} voxels a pixel)"   # fits one panel's width


def projections_title(plan: ExportPlan) -> str:
    """The picture's title: the dataset's name (its full path is in summary.json)."""
    return f"{uris.name(plan.output.uri)}: brightest voxel along z"


def _layout_row(tile) -> tuple:
    """(index, position, size) as the layout picture draws a tile: an affine view as the
    box it covers."""
    if tile.transform is None:
        return tile.index, tile.position, tile.size
    return tile.index, tile.box.start, tile.box.shape
