"""Exporting in this process (the real driver on a LocalExecutor),
reference downsampling written independently of pipelines.pixels.pyramid, and extra channels."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path

import numpy as np
import tifffile

from pipelines.driver import ExportResult, export
from pipelines.execute.executor import LocalExecutor
from pipelines.geometry import Box
from pipelines.pixels.fusion import fuse
from pipelines.tiles import read_region


def export_local(config, **options) -> ExportResult:
    """The real driver (lock, records, stages, commit, report) on a LocalExecutor, quietly."""
    return export(config, LocalExecutor(), stream=io.StringIO(), **options)


def owned_keys(plan, task) -> list[str]:
    """Brute force: every object key a block task must write or report as skipped, listed
    level by level and channel by channel (what `plan.object_count` counts)."""
    from pipelines.formats import format_module
    from pipelines.formats.objects import object_grid
    from pipelines.geometry import grid_indices
    fmt, out, stage = format_module(plan.output.format), plan.output, plan.stages[task.stage]
    keys = []
    for level in range(stage.first, stage.first + stage.count):
        box = plan.level_box(task, level)
        for c in range(out.channels):
            spec = out.array(task.timepoint, c, level)
            lo, hi = object_grid(spec).chunks_touching(box)
            keys += [fmt.chunk_key(spec, index, out.lead_index(task.timepoint, c))
                     for index in grid_indices(hi, lo)]
    return keys


def fused_channel(plan, t: int = 0, c: int = 0) -> np.ndarray:
    """Level 0 of one channel, fused in one piece (z, y, x)."""
    box = Box((0, 0, 0), plan.output.shapes[0])
    return fuse(box, plan.tiles[t][c], plan.offset, plan.blending, plan.output.base.dtype,
                read=partial(read_region, s3=plan.s3), interpolation=plan.interpolation)


def reference_downsample(data: np.ndarray, factor_xyz, method: str) -> np.ndarray:
    """Window mean (rint, clipped) or mode (smallest wins ties), partial edge windows
    using only the voxels that exist — by brute force over windows."""
    f = tuple(reversed(factor_xyz))
    out_shape = tuple(-(-n // k) for n, k in zip(data.shape, f))
    out = np.zeros(out_shape, dtype=data.dtype)
    for index in np.ndindex(*out_shape):
        window = data[tuple(slice(i * k, (i + 1) * k) for i, k in zip(index, f))].ravel()
        if method == "mode":
            values, counts = np.unique(window, return_counts=True)
            out[index] = values[np.argmax(counts)]
        elif data.dtype.kind in "ui":
            info = np.iinfo(data.dtype)
            out[index] = np.clip(np.rint(window.astype(np.float64).mean()), info.min, info.max)
        else:
            out[index] = window.astype(np.float64).mean()
    return out


def reference_pyramid(level0: np.ndarray, plan, method: str) -> list[np.ndarray]:
    levels = [level0]
    for factor in plan.output.factors[1:]:
        levels.append(reference_downsample(levels[-1], factor, method))
    return levels


def add_channel(acquisition: dict, name: str, transform) -> str:
    """Write a second channel: every tile passed through `transform`, same geometry."""
    source = Path(acquisition["paths"]["tiles_json"])
    doc = json.loads(source.read_text())
    folder = source.parent / name
    folder.mkdir(exist_ok=True)
    for tile in doc:
        pixels = tifffile.imread(source.parent / tile["file"])
        target = folder / Path(tile["file"]).name
        tifffile.imwrite(target, transform(pixels).astype(pixels.dtype), contiguous=True)
        tile["file"] = str(target)
    path = source.parent / f"tiles-{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)
