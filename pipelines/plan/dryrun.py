"""Planning on paper: what an export would do, from the tile JSON alone.

`dry_run(config)` opens no tile file and lists no block or chunk: it builds the same task
description the real plan runs (`pipelines.plan.tasks`: boxes of blocks, partitions,
block counts, objects per level counted on compressed grids), whose size grows with the
number of tiles and partitions, never with the number of chunks.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace

import numpy as np

from pipelines.config import JobConfig
from pipelines.config.values import size_text
from pipelines.errors import PlanError
from pipelines.geometry import Vec, voxel_count
from pipelines.illumination.matched import made_anew
from pipelines.illumination.plan import (
    check_estimable,
    check_planned_fields,
    fields_to_estimate,
    planned_field_bytes,
    with_estimated_flatfield,
)
from pipelines.plan import (
    computed_voxels,
    growth_warning,
    plan_output,
    plan_stages,
    plan_tasks,
    read_tiles,
    task_memory_bytes,
)
from pipelines.plan.memory import check_task_memory
from pipelines.plan.output import OutputSpec
from pipelines.tiles import TileSet, check_same_geometry


@dataclass(frozen=True)
class DryRun:
    """What the export of a job would do."""

    tiles: int
    timepoints: int
    channels: int
    shapes: tuple[Vec, ...]                    # per level, x, y, z
    tasks: tuple[int, ...]                     # per stage, all timepoints: executor tasks
    blocks: tuple[int, ...]                    # per stage, all timepoints
    objects: tuple[int, ...]                   # per level, all channels and timepoints
    uncompressed_bytes: int                    # the arrays' span, all levels, channels, timepoints
    computed_bytes: int                        # of it, what the blocks compute (tiles reach)
    task_memory: int
    seconds: float
    peak_rss: int                              # this process's peak resident memory, bytes
    pairs: int | None = None                   # [stitching] enabled: pair tasks to register
    refusal: str = ""                          # why the real run would refuse the plan
    memory_budget: int = 0                     # limits.task_memory, bytes
    warning: str = ""                          # `tasks.growth_warning`
    registered: str = ""                       # [stitching] reused: the refined file planned from
    dataset: str = ""                          # where it goes, its format, layout, type, codec
    output: str = ""                           # what the output holds (`output.look_at_output`)
    anew: bool = False                         # registers, estimates fields or matches anew first
    spec: OutputSpec | None = None             # the output planned (its metadata's names)

    def lines(self) -> list[str]:
        x, y, z = self.shapes[0]
        return ([f"dataset:  {self.dataset}"] if self.dataset else []) + [
            f"tiles:    {self.tiles} per channel, {self.channels} channel(s), "
            f"{self.timepoints} timepoint(s); level 0 x,y,z = [{x}, {y}, {z}], "
            f"{len(self.shapes)} level(s)",
            f"tasks:    {sum(self.tasks):,} in {len(self.tasks)} pass(es) "
            f"({', '.join(f'{n:,}' for n in self.tasks)}), of "
            f"{sum(self.blocks):,} blocks ({', '.join(f'{n:,}' for n in self.blocks)})",
            f"objects:  {sum(self.objects):,} owned by the blocks (empty ones are skipped); "
            f"per level: {', '.join(f'{n:,}' for n in self.objects)}",
            f"bytes:    {size_text(self.computed_bytes)} uncompressed over all levels" + (
                f", computed by the blocks (the arrays span {size_text(self.uncompressed_bytes)}, "
                f"the rest left empty as no tile reaches it)"
                if self.computed_bytes < 0.99 * self.uncompressed_bytes else ""),
            f"memory:   {size_text(self.task_memory)} per task at most, estimated (limits.task_memory "
            f"allows {size_text(self.memory_budget)})",
            # this process's own peak (trial AL: read as the driver's size, where a run's
            # driver also holds Spark's JVM and its Python side, 0.5-0.8 GiB measured)
            f"planning: {self.seconds:.2f} s, {size_text(self.peak_rss)} peak memory for planning "
            f"(a run's driver adds Spark's JVM: spark.driver.memory)",
        ] + ([] if self.pairs is None else [
            f"stitching: {self.pairs:,} pair tasks to register first; the plan above is at the "
            f"stage positions (registration moves the bounds by at most its corrections, and "
            f"the objects with them)"]) + ([] if not self.registered else [
            f"stitching: reused {self.registered}; the plan above is at its registered positions"]) + (
            [f"warning:  {self.warning}"] if self.warning else []) + (
            [self.output] if self.output else [])


def dry_run(config: JobConfig) -> DryRun:
    """Plan `config` from its tile JSONs, as `make_plan` does (the same task description),
    without opening a tile file (a BigStitcher project's view headers are read: they hold
    the pixel types); raises the same errors `make_plan` would, except those that need the
    tile files."""
    began = time.perf_counter()
    tiles, pairs, registered = None, None, ""
    if config.stitching.enabled:   # trial J: planned at the stage positions when reused too
        tiles, pairs, registered, config = _registration(config)
    registers = tiles is not None or pairs is not None   # not reused: placed or measured
    if tiles is None:
        tiles = read_tiles(config, config.s3_options())
    first = tiles[0][0]
    output = plan_output(config, first, len(tiles), len(tiles[0]))
    stages = plan_stages(output)
    tasks = plan_tasks(output, stages, first, config.blocks_per_task, config.task_slots)
    itemsize = np.dtype(output.base.dtype).itemsize
    voxels = sum(voxel_count(shape) for shape in output.shapes)
    check_planned_fields(config, tiles[0])
    # work before which the run cannot tell a committed output is this job's (trial X:
    # the dry run passed what the run then refused), as `driver._check_before_work` decides
    # (fields missing under "auto" are estimated first and judged after, as the run does:
    # whether coefficients can be reused is known only through fields that exist)
    applied = with_estimated_flatfield(config)   # the fields the export will apply
    estimates = fields_to_estimate(applied)
    if estimates and not config.is_project:   # trial AH: 2 tiles passed, the run refused them
        check_estimable([tuple(row[c] for row in tiles) for c in range(len(tiles[0]))],
                        list(config.inputs[0]), config.flatfield_per_slice)
    judged = replace(config, intensity="none") if estimates else config
    anew = made_anew(judged, registers, tiles[0])[0]
    memory = task_memory_bytes(output, first, stages, config.tile_cache,
                               corrected=bool(applied.flatfield) or config.intensity == "match",
                               fields=planned_field_bytes(applied, first))
    try:
        check_task_memory(output, memory, config.tile_cache, config.task_memory)
        refusal = ""
    except PlanError as e:   # the plan is still worth printing: it shows what needs the memory
        refusal = str(e)
    computed = computed_voxels(output, stages, tasks) * output.timepoints * output.channels
    return DryRun(len(first), output.timepoints, output.channels, output.shapes,
                  tuple(tasks.timepoints * len(s) for s in tasks.stages),
                  tuple(tasks.timepoints * s.blocks for s in tasks.stages), tasks.objects,
                  voxels * output.timepoints * output.channels * itemsize,
                  computed * itemsize, memory, time.perf_counter() - began,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  pairs, refusal, config.task_memory, growth_warning(computed, tiles), registered,
                  _dataset(output), anew=anew, spec=output)


def _dataset(output: OutputSpec) -> str:
    """The dataset line: what an output name alone does not show (trial T: `….zarr` without
    output.format became Zarr v3 where an earlier version wrote N5, and nothing said so)."""
    base = output.base
    shard = f", shards {list(base.shard)}" if base.shard else ""
    return (f"{output.uri}  (format {output.format}, layout {output.layout}, {base.dtype}, "
            f"chunks x,y,z {list(base.chunks)}{shard}, codec {base.compressor.name})")


def _registration(config: JobConfig) -> tuple[tuple[tuple[TileSet, ...], ...] | None, int | None,
                                               str, JobConfig]:
    """How the export would register, as `results.last_registration` decides: reusing the
    last registration (what it names, and `config` reading its refined files), placing
    the tile JSONs that changed at its positions (the tile sets placed, and its report),
    or measuring pairs (how many: one task each, from the stage positions)."""
    from pipelines.registration import results as stitching
    target = stitching.registration_target(config)
    known = stitching.last_registration(config, target)
    if known.earlier is not None:
        return None, None, known.earlier.tile_jsons[0][0], known.earlier.stitched(config)
    stitching.check_results_replaceable(config)   # refused by the run as it registers (trial T)
    if known.positions is not None:
        rows = tuple(tuple(ts.on_grid(config.voxel_size, config.interpolation) for ts in row)
                     for row in stitching.placed(target, known.positions))
        check_same_geometry(rows)
        return rows, None, stitching.report_path(config), config
    return None, len(target.pairs), "", config
