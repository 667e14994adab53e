"""`SparkExecutor`: the executor interface on Spark, one Spark task per item.

Executors receive a batch's shared data once (a broadcast) and one item per Spark task;
they send back only the function's small results. Progress is read on the driver by a
thread polling two accumulators (units done, bytes stored), which Spark updates as each
task ends.
"""

from __future__ import annotations

import gc
import re
import threading
import time
import uuid
from functools import partial
from typing import Any

from pyspark import TaskContext
from pyspark.sql import SparkSession

from pipelines.config import JobConfig
from pipelines.execute.executor import Batch, Item, ProgressCallback, Result, failure
from pipelines.spark.session import check_java, first_line, session, under_spark_submit

JOB_GROUP = "tile-export"
POLL_SECONDS = 0.25  # how often the driver asks Spark how many tasks are done


class SparkExecutor:
    """Runs batches on a Spark session: the job's own (started by `start`, stopped by
    `stop`), or one handed in (`SparkExecutor(spark=...)`, left running)."""

    def __init__(self, config: JobConfig | None = None, spark: SparkSession | None = None):
        if config is None and spark is None:
            raise ValueError("SparkExecutor needs a job config or a running session")
        self.config, self.spark, self.owned = config, spark, spark is None

    @property
    def master(self) -> str:
        return (self.spark.sparkContext.master or "") if self.spark else ""

    def check(self) -> None:
        if self.owned and not under_spark_submit():
            check_java()  # environment problems before anything is written

    def start(self) -> float:
        if self.spark is not None:
            return 0.0
        began = time.perf_counter()
        assert self.config is not None
        self.spark = session(self.config)
        return time.perf_counter() - began

    def stop(self) -> None:
        if self.owned and self.spark is not None:
            self.spark.stop()
            self.spark = None

    def run(self, batch: Batch[Item, Result], on_progress: ProgressCallback) -> list[Result]:
        if not batch.items:
            return []
        self.start()
        assert self.spark is not None
        sc = self.spark.sparkContext
        shared, stored, done = sc.broadcast(batch.shared), sc.accumulator(0), sc.accumulator(0)
        sc.setJobGroup(f"{JOB_GROUP}-{uuid.uuid4().hex[:8]}", batch.description)
        rdd = sc.parallelize(batch.items, numSlices=len(batch.items))
        task = partial(_run_task, batch.function, batch.size, batch.units, shared, stored, done)
        try:
            with _Poller(done, stored, on_progress):
                results = rdd.map(task).collect()
        except Exception as e:  # py4j wraps the executor's error in a long Java trace
            raise failure(_failure_line(e), str(e)) from None
        finally:
            shared.unpersist()
        on_progress(sum(batch.units(r) for r in results) if batch.units else len(results),
                    stored.value)
        return results


def _run_task(function, size, units, shared, stored, done, item):
    """Runs on an executor: one item, its units and stored bytes counted for the progress line."""
    context = TaskContext.get()
    result = function(shared.value, item, context.attemptNumber() if context else 0)
    if size is not None:
        stored.add(size(result))
    done.add(units(result) if units is not None else 1)
    _freeze_once()
    return result


_frozen = False


def _freeze_once() -> None:
    """After a worker's first task, move what it holds (modules, the plan) out of the
    garbage collector's sight: pyspark collects after every task, and a full collection
    over those objects took 30-85 ms per task (benchmarks/PROFILE.md)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def _failure_line(error: Exception) -> str:
    match = re.search(r"BlockFailed: (.+)", str(error))
    if match:  # spark.task.maxFailures attempts were made (1 in plain local mode)
        return match.group(1).strip()
    return f"Spark job failed: {first_line(error)}"


class _Poller:
    """While a batch runs: every POLL_SECONDS, tell `on_progress` the units and bytes the
    accumulators have counted."""

    def __init__(self, done: Any, stored: Any, on_progress: ProgressCallback):
        self.done, self.stored, self.on_progress = done, stored, on_progress
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _loop(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            self.on_progress(self.done.value, self.stored.value)
