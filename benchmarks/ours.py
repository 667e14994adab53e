"""This project's export, timed as a user runs it: `pipelines.spark.export(config, spark=…)`
with one Spark session started beforehand (its start-up is reported on its own).

Each run plans, fuses the tiles on Spark's Python workers, encodes, writes and commits
(metadata, ledger); the time is `ExportResult.run_seconds` (planning + tasks + commit,
no start-up). Peak memory of the Python workers is sampled while it runs (`memory`).
"""

from __future__ import annotations

import os
import time

from benchmarks.memory import WorkerMemory
from pipelines.driver import export
from pipelines.pixels.fusion import fuse
from pipelines.plan import make_plan, task_memory
from pipelines.spark import SparkExecutor, session
from pipelines.tiles import read_region


def start(config) -> tuple[object, float]:
    """A Spark session from the job's [spark] settings, its Python workers started and our
    package imported in each (`warm_workers`), and the seconds all that took."""
    began = time.perf_counter()
    spark = session(config)
    spark.sparkContext.setLogLevel("ERROR")
    warm_workers(spark)
    return spark, time.perf_counter() - began


FREEZE_WORKERS = False   # experiment (--gc-freeze-workers): not what the project does


def warm_workers(spark) -> None:
    """One task per core that imports the executor side of this project and waits a moment,
    so every core gets its own Python worker. Workers are reused, but Spark stops idle ones
    after a while: called before each timed export too (untimed), so an export never pays
    a worker's start and imports, which `start`'s time reports once.

    With FREEZE_WORKERS, each worker also moves its objects to the permanent generation
    (gc.freeze), so the gc.collect() pyspark's daemon runs after every task skips them: an
    experiment measuring a change PROFILE.md proposed for pipelines/spark (now done there)."""
    freeze = FREEZE_WORKERS

    def import_and_wait(n: int) -> int:   # nested: shipped by value (benchmarks is not installed)
        import gc
        import time

        import numpy as np

        import pipelines.execute.block  # noqa: F401  (what a block task imports)
        import pipelines.spark  # noqa: F401
        from pipelines.geometry import Box
        from pipelines.pixels.copying import MIN_BYTES, copy_region
        from pipelines.pixels.fusion import fuse
        from pipelines.pixels.value_range import ValueRange, value_range
        from pipelines.tiles import Tile

        # the compiled loops loaded, as the limit's workers load theirs (limit._warm_up):
        # copies in both byte orders (with a block's range gathered on the way, as the
        # export's encoding copies do; the same compiled copy fills rows of chunks), and a
        # block's range and linear blending of two read-only (memory-mapped, in the
        # export) tiles
        values = np.zeros((1, 1, MIN_BYTES // 2), np.uint16)
        for order in "<>":
            copy_region(np.empty(values.shape, np.dtype(np.uint16).newbyteorder(order)), values)
            copy_region(np.empty(values.shape, np.dtype(np.uint16).newbyteorder(order)), values,
                        ValueRange())
        pixels = np.zeros((8, 64, 256), np.uint16)
        pixels.flags.writeable = False
        two = [Tile(0, "a", (0, 0, 0), (256, 64, 8)), Tile(1, "b", (128, 0, 0), (256, 64, 8))]
        value_range(fuse(Box((0, 0, 0), (384, 64, 8)), two, (0, 0, 0), "linear", np.uint16,
                         read=lambda tile, region: pixels[region.slices_zyx()]))
        if freeze:
            gc.collect()
            gc.freeze()
        time.sleep(0.5)
        return n

    cores = spark.sparkContext.defaultParallelism
    spark.sparkContext.parallelize(range(cores), cores).map(import_and_wait).collect()


def run(config, spark) -> dict:
    """Export `config` on `spark`; figures of the run (no verification here)."""
    warm_workers(spark)
    with open(os.devnull, "w") as quiet, WorkerMemory() as memory:
        result = export(config, executor=SparkExecutor(spark=spark), stream=quiet)
    summary, plan = result.summary, result.plan
    return {"seconds": result.run_seconds, "volume_bytes": result.volume_bytes,
            "stored_bytes": summary.bytes_written, "objects": summary.objects_written,
            "skipped": summary.objects_skipped, "tasks": summary.tasks, "blocks": summary.blocks,
            "master": result.master, "shape": list(summary.shape),
            "memory": {**memory.report(), **memory_budget(plan)}}


def memory_budget(plan) -> dict:
    """What the plan expects one task to need: `task_memory` (plan.memory's peak, with
    limits.tile_cache and the Python worker's own memory, `memory.WORKER_BYTES`) and block
    bytes = the fusing term of the memory model. The yardstick `budget_3x` takes the block
    alone: the benchmark's tiles are memory-mapped, so no byte-limited tile cache is used
    (its term is 0 here)."""
    block = task_memory(plan.output, plan.tiles[0][0], plan.stages).fusing
    tile_cache = 0
    return {"task_memory": plan.task_memory, "block_bytes": block, "tile_cache_bytes": tile_cache,
            "budget_3x": 3 * (block + tile_cache)}


def expected(config):
    """A function box → the fused voxels our fusion computes there (z, y, x), for checking
    an overlapping export without trusting its output."""
    plan = make_plan(config, check_files=False)
    tiles = list(plan.tiles[0][0])

    def voxels(box):
        return fuse(box, tiles, plan.offset, plan.blending, plan.output.base.np_dtype,
                    read=read_region, interpolation=plan.interpolation)
    return voxels


def level0(config):
    """(pipelines format name, ArraySpec of level 0) of the job's output."""
    return plan_level0(make_plan(config, check_files=False))


def plan_level0(plan):
    """`level0` of a plan already made."""
    return plan.output.format, plan.output.array(0, 0, 0)
