"""Planning on the driver: what the output is, which tasks exist, what each task needs.

`make_plan(config)` reads every tile JSON (timepoints × channels), checks every tile
file (and takes its identity: size and time, `tiles.identity`), and returns an `ExportPlan`:
- the output (`plan.output`): format, layout, the level-0 array and every pyramid level;
- stages: stage 0 fuses tiles into level 0 and, inside each block, the levels its block
  holds whole chunks of; each later stage reads the previous level from the store and
  computes the next levels, still one owner per object;
- the tasks (`plan.tasks`, a `TaskPlan`): per stage, the blocks that have something to
  do, described by grid ranges and cut into partitions of several blocks, one executor
  task each (`pipelines.plan.tasks`);
- the memory one task needs (`plan.task_memory`, from `plan.memory`). Every input error is raised here, before
  any task runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.config import JobConfig
from pipelines.config.inputs import check_channel_names, default_channel_names
from pipelines.formats import ArraySpec
from pipelines.formats.objects import object_grid
from pipelines.geometry import Box, Vec, ceil_div
from pipelines.illumination.correct import Correction
from pipelines.illumination.plan import plan_correction
from pipelines.plan.memory import check_memory, task_memory, task_memory_bytes
from pipelines.plan.output import OutputSpec, Stage, plan_output, plan_stages
from pipelines.plan.tasks import (
    BlockReceipt,
    BlockTask,
    PartitionTask,
    StageTasks,
    TaskPlan,
    computed_voxels,
    growth_warning,
    plan_tasks,
)
from pipelines.storage.s3 import S3Options
from pipelines.tiles import Tile, TileSet, check_same_geometry, check_tile_files, read_tile_jsons
from pipelines.tiles.bigstitcher import read_project
from pipelines.tiles.identity import file_identities, identities_digest

__all__ = ["BlockReceipt", "BlockTask", "ExportPlan", "OutputSpec", "PartitionTask", "Stage",
           "StageTasks", "TaskPlan", "check_memory", "computed_voxels", "growth_warning", "make_plan", "plan_and_identities", "plan_output", "plan_stages",
           "plan_tasks", "read_acquisition", "read_tiles", "task_memory", "task_memory_bytes",
           "tile_paths"]



@dataclass(frozen=True)
class ExportPlan:
    """Everything the driver decided before the first task runs."""

    output: OutputSpec
    tiles: tuple[tuple[TileSet, ...], ...]  # per timepoint, per channel
    stages: tuple[Stage, ...]
    tasks: TaskPlan | None  # None in the copy sent to executors: tasks travel one by one
    blending: str
    task_memory: int  # bytes one task needs at most
    channel_names: tuple[str, ...] = ()
    fail_blocks: tuple[Vec, ...] = ()
    rerun: bool = False  # continuing an unfinished run of this job: clear objects now empty
    s3: S3Options | None = None  # how executors reach s3:// inputs and outputs
    task_delay: float = 0.0  # test hook (debug.task_delay); not part of the output's identity
    interpolation: str = "nearest"  # how sub-voxel tile positions are honoured (fusion)
    tile_cache: int = 0  # bytes of decoded tile reads an executor process keeps (limits)
    checkpoint_seconds: float = 30.0  # a task records its finished blocks this often
    resume_verify: str = "size"  # what a resume confirms of recorded objects ([resume] verify)
    correction: Correction | None = None  # flatfield and intensity corrections (fusion)
    tile_files: str = ""  # digest of the tile files' identities (tiles.identity): a changed file, another run
    job: str = ""  # this run's id in its job record (`records.start_record`), once it started
    lock: str = ""  # the id in the output's lock this run holds (`lock.take_lock`), once it does

    @property
    def offset(self) -> Vec:
        """Stage position of output voxel (0, 0, 0)."""
        return self.output.base.offset

    @property
    def array(self) -> ArraySpec:
        """Level 0 of the first channel and timepoint."""
        return self.output.array(0, 0, 0)

    @property
    def task_plan(self) -> TaskPlan:
        if self.tasks is None:
            raise ValueError("this copy of the plan has no task list (executors get tasks one by one)")
        return self.tasks

    def tasks_of(self, stage: int) -> StageTasks:
        return self.task_plan.stages[stage]

    def tiles_of(self, task: BlockTask, channel: int) -> list[Tile]:
        by_index = self.tiles[task.timepoint][channel].by_index()
        return [by_index[i] for i in task.tiles]

    def level_box(self, task: BlockTask, level: int) -> Box:
        """The region (at `level`) a task computes: its block, scaled down from the stage's first level."""
        first = self.stages[task.stage].first
        box = self.output.block_grid(first).block_box(task.index)
        scale = tuple(a // b for a, b in zip(self.output.cumulative(level), self.output.cumulative(first)))
        stop = tuple(min(ceil_div(s, f), n) for s, f, n in zip(box.stop, scale, self.output.shapes[level]))
        return Box(tuple(s // f for s, f in zip(box.start, scale)), stop)

    def level_boxes(self, task: BlockTask) -> dict[int, Box]:
        """`level_box` of every level of the task's stage, by level."""
        stage = self.stages[task.stage]
        return {level: self.level_box(task, level) for level in range(stage.first, stage.first + stage.count)}

    def computed_voxels(self) -> int:
        """Voxels the block tasks compute, every level, one channel and timepoint
        (`tasks.computed_voxels`)."""
        return computed_voxels(self.output, self.stages, self.task_plan)

    def object_count(self, task: BlockTask, boxes: dict[int, Box] | None = None) -> int:
        """How many objects (chunks or shards) a task owns, counted on the object grids of
        its levels without listing their keys. `boxes`: the task's `level_boxes`, if the
        caller has them already (an executor asks for them once per block)."""
        out = self.output
        count = 0
        for level, box in (boxes or self.level_boxes(task)).items():
            lo, hi = object_grid(out.array(task.timepoint, 0, level)).chunks_touching(box)
            count += math.prod(b - a for a, b in zip(lo, hi))
        return count * out.channels


def make_plan(config: JobConfig, check_files: bool = True,
              tile_files: str | None = None) -> ExportPlan:
    """Validate the inputs of `config` and plan the export; raises PipelineError subclasses.
    `tile_files`: the digest of the tile files' identities, when the caller took it already
    (`ExportPlan.tile_files` of a plan of the same files)."""
    return plan_and_identities(config, check_files, tile_files)[0]


def plan_and_identities(config: JobConfig, check_files: bool = True, tile_files: str | None = None
                        ) -> tuple[ExportPlan, dict[str, Any]]:
    """`make_plan`, and the tile files' identities it took (none when given `tile_files`),
    by path: the registration's and the coefficients' fingerprints are made of the same
    files' identities, and a run asks for each once (`tiles.identity.file_identities`)."""
    s3 = config.s3_options()
    tiles, names = read_acquisition(config, s3)
    identities: dict[str, Any] = {}
    if tile_files is None:
        identities = _tile_identities(config, tiles, s3, check_files)
        tile_files = identities_digest(identities)
    first = tiles[0][0]
    output = plan_output(config, first, len(tiles), len(tiles[0]))
    stages = plan_stages(output)
    tasks = plan_tasks(output, stages, first, config.blocks_per_task, config.task_slots)
    correction = plan_correction(config, tiles)
    plan = ExportPlan(output, tiles, stages, tasks, config.blending,
                      task_memory_bytes(output, first, stages, config.tile_cache,
                                        corrected=correction is not None,
                                        fields=correction.field_bytes if correction else 0), names,
                      config.fail_blocks, s3=s3, task_delay=config.task_delay,
                      interpolation=config.interpolation, tile_cache=config.tile_cache,
                      checkpoint_seconds=config.checkpoint_seconds,
                      resume_verify=config.resume_verify, correction=correction,
                      tile_files=tile_files)
    check_memory(plan, config.task_memory)
    return plan, identities


def _tile_identities(config: JobConfig, tiles: tuple[tuple[TileSet, ...], ...],
                     s3: S3Options | None, check_files: bool) -> dict[str, Any]:
    """Check every tile file (with `check_files`) and take their identities. The check
    opens each file anyway and hands back what it saw (no request of its own on S3);
    unchecked files — a project's views, opened as it was read, or files a caller does not
    check (benchmarks) — are asked for theirs: a stat each here, a HEAD each on S3."""
    if check_files and not config.is_project:
        return check_tile_files([ts for row in tiles for ts in row], s3)
    return file_identities(tile_paths(tiles), s3)


def tile_paths(tiles: tuple[tuple[TileSet, ...], ...]) -> list[str]:
    """Every tile file of a plan's tiles (timepoints × channels), each once, sorted."""
    return sorted({t.path for row in tiles for ts in row for t in ts})


def read_tiles(config: JobConfig, s3: S3Options | None) -> tuple[tuple[TileSet, ...], ...]:
    """Every tile set of the job (timepoints × channels) on the output grid."""
    return read_acquisition(config, s3)[0]


def read_acquisition(config: JobConfig, s3: S3Options | None
                     ) -> tuple[tuple[tuple[TileSet, ...], ...], tuple[str, ...]]:
    """The job's tile sets (timepoints × channels; from tile JSONs or a BigStitcher
    project), placed on the output grid (`fusion.voxel_size`) and checked to share one
    geometry, and the channel names (input.channel_names, else the JSON file names or the
    project's channel names)."""
    if config.is_project:
        project = read_project(config.tiles, s3, {k: list(v) for k, v in config.views})
        tiles, found = project.tiles, project.channel_names
    else:
        tiles = read_tile_jsons(config.inputs, s3)
        found = default_channel_names(config.inputs[0])
    check_channel_names(config.channel_names, len(tiles[0]))   # a project's, counted only now
    tiles = tuple(tuple(ts.on_grid(config.voxel_size, config.interpolation) for ts in row)
                  for row in tiles)
    check_same_geometry(tiles)
    return tiles, config.channel_names or found
