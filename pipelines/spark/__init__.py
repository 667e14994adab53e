"""Spark: the session, running a plan's blocks on executors, progress, and `export`.

The only module that imports pyspark. Executors receive the plan once (a broadcast of
small frozen dataclasses) and one `BlockTask` per Spark task; they write chunks to the
output themselves and send back only `BlockReceipt`s.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from functools import partial
from typing import TextIO

import numpy as np
from pyspark import SparkContext, TaskContext
from pyspark.sql import SparkSession

from pipelines.execute.block import run_block
from pipelines.commit import ledger
from pipelines.commit.publish import (CommitSummary, check_output, commit, fingerprint, record_failure,
                     release_lock, remove_dataset, start_record, take_lock)
from pipelines.config import JobConfig
from pipelines.errors import BlockFailed, SparkStartError
from pipelines.plan import BlockReceipt, ExportPlan, check_tile_files, make_plan
from pipelines.report.summary import RunReport, write_run_report
from pipelines.storage import beside_store, open_store
from pipelines.registration import results as stitching_step
from pipelines.registration import find_pairs, register_pair, solve
from pipelines.tiles import read_region

JOB_GROUP = "tile-export"
BAR_WIDTH = 24   # characters of the progress bar drawn on a terminal


@dataclass(frozen=True)
class ExportResult:
    summary: CommitSummary
    plan: ExportPlan
    startup_seconds: float   # starting Spark (0 when a session was handed in)
    run_seconds: float       # planning, block tasks and commit
    master: str = ""         # the Spark master the blocks ran on
    resumed: int = 0         # tasks an earlier run had already recorded in the ledger
    stitching: "StitchResult | None" = None   # when [stitching] enabled ran first
    report: "RunReport | None" = None         # the run report beside the dataset

    @property
    def volume_bytes(self) -> int:
        """Uncompressed bytes of every level, channel and timepoint: what throughput counts."""
        out = self.plan.output
        voxels = sum(int(np.prod(shape)) for shape in out.shapes) * out.channels * out.timepoints
        return voxels * np.dtype(out.base.dtype).itemsize


def session(config: JobConfig) -> SparkSession:
    """A Spark session with the job's [spark] settings.

    Under spark-submit the master (and anything else given on its command line) is
    already set; the job file's `spark.master` is used only when running as plain Python.
    Raises SparkStartError (one line) when Spark cannot start.
    """
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not under_submit:
        _check_java()
        if config.spark_master.startswith("local"):
            # Workers on this machine must run this interpreter (the one with our
            # packages), and local mode needs no network beyond loopback.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(f"tile export: {config.output.uri}")
    for key, value in config.spark_conf:
        if key == "spark.master" and under_submit:
            continue
        builder = builder.config(key, value)
    builder = builder.config("spark.ui.showConsoleProgress", "false")  # we print our own
    try:
        spark = builder.getOrCreate()
    except Exception as e:
        raise SparkStartError(f"cannot start Spark (spark.master = {config.spark_master!r}): "
                              f"{_first_line(e)}") from None
    spark.sparkContext.setLogLevel("WARN")
    if spark.sparkContext.master.startswith("local"):
        _quiet_task_failures(spark)
    return spark


def _quiet_task_failures(spark: SparkSession) -> None:
    """In local modes executors log into our console: a failing task's Java and Python
    traces would bury the one-line message (the trace is saved in the error log instead)."""
    try:
        jvm = spark.sparkContext._jvm
        configurator = jvm.org.apache.logging.log4j.core.config.Configurator
        for logger in ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager"):
            configurator.setLevel(logger, jvm.org.apache.logging.log4j.Level.OFF)
    except Exception:  # a different logging backend: keep Spark's own output
        pass


def _check_java() -> None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    if not shutil.which(java):
        raise SparkStartError("Java 17 or newer is needed for Spark, and no 'java' was found "
                              "(install a JDK 17 or set JAVA_HOME)")


@dataclass(frozen=True)
class StitchResult:
    outcome: "stitching_step.StitchOutcome"
    startup_seconds: float
    run_seconds: float


def stitch(config: JobConfig, spark: SparkSession | None = None,
           stream: TextIO = sys.stderr, check_files: bool = True) -> StitchResult:
    """Measure every overlapping pair on executors, solve on the driver, write the
    refined tile JSONs, the report and the picture (see `pipelines.registration.results`)."""
    started = time.perf_counter()
    reference, every = stitching_step.reference_tiles(config)
    if check_files:
        check_tile_files(list(reference), stitching_step.s3_options(config))
    options = stitching_step.pair_options(config)
    pairs = find_pairs(reference, options)
    own_session, startup = spark is None, 0.0
    if own_session:
        spark = session(config)
        startup = time.perf_counter() - started
    try:
        began = time.perf_counter()
        shifts = _measure_pairs(spark, reference, pairs, options, config, stream)
        seconds = time.perf_counter() - began
    finally:
        if own_session:
            spark.stop()
    found = [s for s in shifts if s is not None]
    unmatched = [p for p, s in zip(pairs, shifts) if s is None]
    solution = solve({t.index: t.position for t in reference}, found,
                     config.stitching.min_score, config.stitching.max_residual)
    doc = stitching_step.report(reference, solution, unmatched, config, seconds)
    outcome = stitching_step.write_results(config, reference, every, solution, doc)
    return StitchResult(outcome, startup, time.perf_counter() - started - startup)


def _measure_pairs(spark, reference, pairs, options, config, stream) -> list:
    """register_pair for every pair, one Spark task each; None where nothing matched."""
    if not pairs:
        return []
    sc = spark.sparkContext
    shared = sc.broadcast((reference, options, stitching_step.s3_options(config)))
    group = f"{JOB_GROUP}-pairs-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, f"register {len(pairs)} tile pairs")
    rdd = sc.parallelize(pairs, numSlices=len(pairs))
    try:
        with Progress(sc, group, len(pairs), None, stream, unit="pairs"):
            return rdd.map(partial(_register, shared)).collect()
    except Exception as e:
        raise BlockFailed(f"registration failed: {_first_line(e)}") from None
    finally:
        shared.unpersist()


def _register(shared, pair):
    """Runs on an executor: read the two crops of one pair and measure its offset."""
    reference, options, s3 = shared.value
    index = reference.by_index()
    return register_pair(index[pair[0]], index[pair[1]], options,
                         read=partial(read_region, s3=s3))


def export(config: JobConfig, spark: SparkSession | None = None,
           stream: TextIO = sys.stderr, overwrite: bool = False) -> ExportResult:
    """Validate, plan, run every block on Spark and commit; metadata only if all succeed.

    With `spark` given, that session is used and left running; otherwise one is started
    from the job's settings and stopped at the end. `overwrite` first removes whatever the
    output holds, a committed dataset included. With `[stitching] enabled`, the tiles are
    registered first and fused at the refined positions.
    """
    started = time.perf_counter()
    if not config.stitching.enabled:
        return _export(config, spark, stream, overwrite, started)
    make_plan(config)   # every input and output problem is reported before pairs run
    own_session, startup = spark is None, 0.0
    if own_session:
        spark = session(config)
        startup = time.perf_counter() - started
    try:
        stitched = stitch(config, spark, stream, check_files=False)
        stream.write(stitch_summary(stitched) + "\n")
        facts = {"stitching": {k: v for k, v in stitched.outcome.report.items()
                               if k not in ("pair_results", "tile_results", "unmatched_pairs")}
                 | {"report": stitched.outcome.report_path, "picture": stitched.outcome.picture_path}}
        # the refined JSONs name the tile files checked above: no second round of checks
        result = _export(stitched.outcome.stitched(config), spark, stream, overwrite, started,
                         facts, check_files=False)
    finally:
        if own_session:
            spark.stop()
    return replace(result, stitching=stitched, startup_seconds=startup,
                   run_seconds=result.run_seconds - startup)


def stitch_summary(result: StitchResult) -> str:
    """Lines for the console: pairs, what was dropped, accuracy, where the files are."""
    doc = result.outcome.report
    pairs, solve_info = doc["pairs"], doc["solve"]
    lines = [
        f"stitching: {pairs['measured']} pairs measured in {doc['seconds']['pairs']:.1f} s "
        f"({doc['seconds']['per_pair']:.2f} s per pair), {pairs['kept']} kept, "
        f"{pairs['dropped']} dropped, {pairs['unmatched']} without a match",
        f"           residual median {doc['residual_voxels']['median']} / max "
        f"{doc['residual_voxels']['max']} voxels; corrections median "
        f"{doc['correction_voxels']['median']} / max {doc['correction_voxels']['max']} voxels",
    ]
    if solve_info["unlinked_tiles"]:
        lines.append(f"           tiles without a trustworthy link (stage position kept): "
                     f"{solve_info['unlinked_tiles']}")
    lines.append(f"           refined tiles: {result.outcome.tile_jsons[0][0]}")
    lines.append(f"           report: {result.outcome.report_path}")
    lines.append(f"           picture: {result.outcome.picture_path}")
    return "\n".join(lines)


def _export(config: JobConfig, spark, stream, overwrite, started, facts=None,
            check_files: bool = True) -> ExportResult:
    plan = make_plan(config, check_files=check_files)
    store, beside = open_store(config.output.uri, plan.s3), beside_store(config.output.uri, plan.s3)
    if spark is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        _check_java()  # environment problems before anything is written
    store.check_writable()  # before the lock: a missing bucket or folder is one clear line
    take_lock(plan, beside)
    try:
        if overwrite:
            removed = remove_dataset(plan, store, beside)
            stream.write(f"--overwrite: removed {removed} objects of the previous dataset\n")
        return _export_locked(config, plan, store, beside, spark, stream, started, facts or {})
    finally:
        release_lock(plan, beside)


def _export_locked(config, plan, store, beside, spark, stream, started, facts) -> ExportResult:
    """The export while this job holds the output's lock."""
    began = time.time()
    plan = check_output(plan, store, beside)
    own_session = spark is None
    startup = 0.0
    if own_session:
        before = time.perf_counter()
        spark = session(config)
        startup = time.perf_counter() - before
    master = spark.sparkContext.master
    start_record(plan, beside)
    base = ledger.folder(plan, fingerprint(plan))
    receipts = ledger.recorded(beside, base) if plan.rerun else []
    done = {r.task for r in receipts}
    if done:
        stream.write(f"resuming: {len(done)} of {len(plan.tasks)} tasks are already recorded\n")
    try:
        for n, stage in enumerate(plan.stages):
            if len(plan.stages) > 1:
                last = stage.first + stage.count - 1
                stream.write(f"stage {n + 1}/{len(plan.stages)}: levels {stage.first}"
                             f"{'' if last == stage.first else f'–{last}'}\n")
            todo = [t for t in plan.tasks_of(n) if t.key not in done]
            receipts += run_blocks(spark, plan, todo, stream, base)
        summary = commit(plan, receipts, store, beside)
        ledger.compact(beside, base, receipts)
    except BlockFailed as e:
        try:
            where = f"the full trace is in {record_failure(plan, beside, str(e), getattr(e, 'detail', str(e)))}"
        except Exception as cause:  # e.g. the disk that failed the block is full
            where = f"the trace could not be saved ({type(cause).__name__})"
        raise BlockFailed(f"{e}; {where}") from None
    finally:
        if own_session:
            spark.stop()
    run_seconds = time.perf_counter() - started - startup
    facts = {"master": master, "startup_seconds": round(startup, 2), "run_seconds": round(run_seconds, 2),
             "resumed_tasks": len(done), **facts}
    try:
        report = write_run_report(plan, summary, receipts, store, beside, began, facts)
    except Exception as e:  # the dataset is committed; a picture must not fail the job
        stream.write(f"warning: the run report could not be written: {_first_line(e)}\n")
        report = None
    return ExportResult(summary, plan, startup, run_seconds, master, resumed=len(done), report=report)


def run_blocks(spark: SparkSession, plan: ExportPlan, tasks, stream: TextIO = sys.stderr,
               ledger_base: str | None = None) -> list[BlockReceipt]:
    """Run one Spark task per block task and gather the receipts; raise BlockFailed on
    failure. With `ledger_base`, each executor records its receipt in the ledger as soon as
    its objects are written."""
    sc = spark.sparkContext
    if not tasks:
        return []
    shared = sc.broadcast(replace(plan, tasks=()))  # tasks travel one per Spark task
    written = sc.accumulator(0)
    group = f"{JOB_GROUP}-{uuid.uuid4().hex[:8]}"  # one group per stage: progress counts its tasks only
    sc.setJobGroup(group, f"compute and write {len(tasks)} blocks")
    rdd = sc.parallelize(tasks, numSlices=len(tasks))
    progress = Progress(sc, group, len(tasks), written, stream)
    try:
        with progress:
            return rdd.map(partial(_execute, shared, written, ledger_base)).collect()
    except Exception as e:  # py4j wraps the executor's error in a long Java trace
        failure = BlockFailed(_failure_line(e))
        failure.detail = str(e)
        raise failure from None
    finally:
        shared.unpersist()


def _execute(shared, written, ledger_base, task) -> BlockReceipt:
    """Runs on an executor: one block, its receipt into the ledger, its bytes counted for
    the progress line."""
    plan = shared.value
    context = TaskContext.get()
    receipt = run_block(task, plan, attempt=context.attemptNumber() if context else 0)
    if ledger_base:
        ledger.record(beside_store(plan.output.uri, plan.s3), ledger_base, receipt)
    written.add(receipt.nbytes)
    _freeze_once()
    return receipt


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
        return f"{match.group(1).strip()}; no metadata was written"
    return f"Spark job failed: {_first_line(error)}; no metadata was written"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else repr(error)


class Progress:
    """Blocks done of total, MiB stored (compressed), MiB/s and ETA, printed while blocks run.

    On a terminal a bar and that line are redrawn in place twice a second; otherwise (logs,
    batch jobs) a plain line is printed every `log_interval` seconds.
    """

    def __init__(self, sc: SparkContext, group: str, total: int, written, stream: TextIO,
                 log_interval: float = 10.0, unit: str = "blocks"):
        self.sc, self.group, self.total, self.written, self.stream = sc, group, total, written, stream
        self.unit = unit
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.interval = 0.5 if self.tty else log_interval
        self.stop = threading.Event()
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if exc[0] is None:
            self._print(self.total, final=True)

    def done(self) -> int:
        tracker = self.sc.statusTracker()
        count = 0
        for job in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(job)
            for stage in (info.stageIds if info else []):
                stage_info = tracker.getStageInfo(stage)
                count += stage_info.numCompletedTasks if stage_info else 0
        return min(count, self.total)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self._print(self.done())

    def _print(self, done: int, final: bool = False) -> None:
        elapsed = time.perf_counter() - self.started
        eta = (elapsed / done * (self.total - done)) if done else float("nan")
        line = f"{self.unit} {done}/{self.total} ({100 * done / self.total:.0f}%)  "
        if self.written is not None:   # pairs write nothing; blocks report their bytes
            mb = self.written.value / 2**20
            line += f"{mb:.1f} MiB stored  {mb / elapsed if elapsed > 0 else 0.0:.1f} MiB/s  "
        line += f"done in {elapsed:.1f} s" if final else f"ETA {eta:.0f} s"
        if self.tty:   # a bar that fills, redrawn in place
            filled = round(BAR_WIDTH * done / self.total)
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            self.stream.write("\r" + bar + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
