"""`SparkExecutor`: the executor interface on Spark, one Spark task per item.

Executors receive a batch's shared data once (a broadcast) and one item per Spark task;
they send back only the function's small results. The Spark job runs in a thread of its
own while the main thread polls two accumulators (units done, bytes stored, which Spark
updates as each task ends) for the progress line; waiting in short steps there keeps the
job stoppable by SIGINT and SIGTERM, which Python handles only in the main thread.
"""

from __future__ import annotations

import contextlib
import gc
import re
import sys
import threading
import time
import uuid
from functools import partial
from typing import Any

from pyspark import SparkContext, TaskContext
from pyspark.sql import SparkSession

from pipelines.config import JobConfig
from pipelines.config.master import is_local_master
from pipelines.errors import BlockFailed, StoreUnavailable, Terminated, raise_if_stopped
from pipelines.execute.executor import Batch, Item, ProgressCallback, Result, failure
from pipelines.spark.session import (
    check_java,
    check_master,
    end_launched_jvm,
    first_line,
    launches_before,
    session,
    under_spark_submit,
)

JOB_GROUP = "tile-export"
POLL_SECONDS = 0.25  # how often the driver asks Spark how many tasks are done
CANCEL_SECONDS = 10  # how long a stopped run waits for its cancelled Spark job to end
EXECUTOR_WAIT_SECONDS = 30.0  # a cluster with no executor after this long is asked about


class SparkExecutor:
    """Runs batches on a Spark session: the job's own (started by `start`, stopped by
    `stop`), or one handed in (`SparkExecutor(spark=...)`, left running). A session this
    process already runs (a notebook's) is used as one handed in: Spark gives it to
    `start` in place of a new one, and stopping it would stop its owner's work."""

    def __init__(self, config: JobConfig | None = None, spark: SparkSession | None = None):
        if config is None and spark is None:
            raise ValueError("SparkExecutor needs a job config or a running session")
        self.config, self.spark, self.owned = config, spark, spark is None
        self.startup_seconds = 0.0   # what starting the session took, whoever asked first
        self.asked_about_executors = False   # `_no_executor_note` printed at most once

    @property
    def master(self) -> str:
        return (self.spark.sparkContext.master or "") if self.spark else ""

    def check(self) -> None:
        if self.owned and not under_spark_submit():
            check_java()  # environment problems before anything is written
            assert self.config is not None  # an owned session is started from a config
            check_master(self.config.spark_master)

    def start(self) -> float:
        if self.spark is not None:
            return 0.0
        began = time.perf_counter()
        assert self.config is not None
        running = SparkContext._active_spark_context is not None
        before = launches_before()
        try:
            self.spark = session(self.config)
        except (KeyboardInterrupt, Terminated):
            if not running and not under_spark_submit():   # a JVM of our own, half started
                end_launched_jvm(before)
            raise
        if running:   # getOrCreate gave this process's running session: not ours to stop
            self.owned = False
        self.startup_seconds = time.perf_counter() - began
        return self.startup_seconds

    def stop(self) -> None:
        if self.owned and self.spark is not None:
            spark, self.spark = self.spark, None
            try:
                spark.stop()
            except Exception:  # its JVM already gone, e.g. SIGTERM to the whole job
                pass

    def run(self, batch: Batch[Item, Result], on_progress: ProgressCallback) -> list[Result]:
        if not batch.items:
            return []
        self.start()
        assert self.spark is not None
        sc = self.spark.sparkContext
        shared, stored, done = sc.broadcast(batch.shared), sc.accumulator(0), sc.accumulator(0)
        group = f"{JOB_GROUP}-{uuid.uuid4().hex[:8]}"
        rdd = sc.parallelize(batch.items, numSlices=len(batch.items))
        task = partial(_run_task, batch.function, batch.size, batch.units, shared, stored, done)
        outcome: dict[str, Any] = {}

        def collect() -> None:   # in its own thread: the job group is a thread-local property
            try:
                sc.setJobGroup(group, batch.description)
                outcome["results"] = rdd.map(task).collect()
            except BaseException as e:  # handed to the waiting thread
                outcome["error"] = e

        # The main thread waits in short steps, reporting progress, rather than blocking in
        # the JVM call: a SIGINT or SIGTERM then interrupts it at once (Python runs signal
        # handlers only in the main thread), and it cancels the job before stopping.
        worker = threading.Thread(target=collect, name="spark-collect", daemon=True)
        began = time.perf_counter()
        try:
            worker.start()
            while worker.is_alive():
                worker.join(POLL_SECONDS)
                on_progress(done.value, stored.value)
                raise_if_stopped()   # a stop swallowed on its way (trial AH: in a py4j finaliser)
                if not self.asked_about_executors and time.perf_counter() - began > EXECUTOR_WAIT_SECONDS:
                    self.asked_about_executors = True
                    note = _no_executor_note(sc)
                    if note:   # beside Spark's own WARN lines, which say less
                        sys.stderr.write(note + "\n")
        except BaseException as stopped:
            if self.owned and isinstance(stopped, (KeyboardInterrupt, Terminated)):
                # the job says in one line what a signal did; the JVM's ERROR lines of tasks
                # torn down mid-flight (a broadcast gone, a BlockManager stopping) are not
                # news (trial M: 25 lines of Java before it, now and then); a session this
                # job was given keeps its level (review H)
                with contextlib.suppress(Exception):
                    sc.setLogLevel("OFF")
            with contextlib.suppress(Exception):
                sc.cancelJobGroup(group)
            worker.join(CANCEL_SECONDS)
            raise
        finally:
            with contextlib.suppress(Exception):   # the JVM may be gone (a signal to the whole job)
                shared.unpersist()
        error = outcome.get("error")
        if isinstance(error, Exception):   # py4j wraps the executor's error in a long Java trace
            text = _error_text(error)
            raise failure(_failure_line(text), text) from None
        if error is not None:
            raise error
        results = outcome["results"]
        on_progress(sum(batch.units(r) for r in results) if batch.units else len(results),
                    stored.value)
        return results


def _no_executor_note(sc: SparkContext) -> str:
    """A warning when a cluster has given the job no executor at all (EXECUTOR_WAIT_SECONDS
    into a batch), '' otherwise. Spark waits for a worker that can hold one, saying only
    "Initial job has not accepted any resources" every 15 s: an executor heap larger than
    every worker's memory waited at 0 % for ever (trial AG)."""
    master = sc.master or ""
    if is_local_master(master):
        return ""
    with contextlib.suppress(Exception):   # the JVM's view; the driver counts as one
        if len(sc._jsc.sc().statusTracker().getExecutorInfos()) > 1:
            return ""
        conf = sc.getConf()
        memory = conf.get("spark.executor.memory", "1g")
        cores = conf.get("spark.executor.cores", None)
        wanted = f"spark.executor.memory = {memory!r}" + (f" and spark.executor.cores = {cores}"
                                                          if cores else "")
        # a standalone master gives an executor to a worker whose free memory holds its
        # heap; YARN and Kubernetes add the overhead to a container's size
        return (f"warning: no executor has started in {EXECUTOR_WAIT_SECONDS:.0f} s on {master}: "
                f"Spark waits for the cluster to start one with {wanted}. Does a worker (a YARN "
                f"queue, a Kubernetes node) have that free? The master's web UI lists its "
                f"workers' free memory and cores. Lower spark.executor.memory, or stop the job "
                f"with Ctrl-C")
    return ""


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


# What a failed Spark job says when the driver's JVM is gone (spark-submit's JVM killed or
# signalled alone: trial Q recorded "ConnectionRefusedError" or py4j's "An error occurred
# while calling z:…collectAndServe" as the run's cause)
# (trial AD: "spark-submit's JVM killed …?" where no spark-submit was involved)
JVM_GONE = "Spark's driver JVM ended while the tasks ran (killed, or signalled on its own?)"


def _error_text(error: Exception) -> str:
    """The text of the error a Spark job raised: str() of py4j's Java exception asks the
    JVM for its trace, which fails when the JVM is gone."""
    try:
        text = str(error)
    except Exception:
        return JVM_GONE
    # py4j's own words, with no Java exception after them (a task's failure, even of a
    # refused S3 connection, comes with the Java trace that carries it)
    alone = "\n" not in text.strip()
    gone = alone and ("Connection refused" in text or "Answer from Java side is empty" in text
                      or re.match(r"An error occurred while calling \S+\s*$", text) is not None)
    return JVM_GONE + f": {first_line(error)}" if gone else text


# what a worker whose Python lacks a module or cannot start needs
WORKER_PYTHON = ("PYSPARK_PYTHON / spark.pyspark.python must name a Python with this project's "
                 "dependencies on every node")


def _failure_line(text: str) -> str:
    """One line for a failed Spark job whose error reads `text`."""
    # the worker's traceback reaches the driver as text, naming the exception's class
    match = re.search(rf"{BlockFailed.__name__}: (.+)", text)
    if match:  # spark.task.maxFailures attempts were made (1 in plain local mode)
        line = match.group(1).strip()
        if not re.search(r"(ModuleNotFound|Import)Error: ", line):
            return line
        if re.search(r"No module named 'pipelines|from 'pipelines", line):
            # a part of ours missing: a zip of an older checkout (review)
            return f"{line} (rebuild dist/pipelines.zip with scripts/package_project.py)"
        # a dependency imported only where a block needs it (numba: trial AG, where it read
        # like a problem of the data)
        return f"{line} ({WORKER_PYTHON})"
    match = re.search(rf"{StoreUnavailable.__name__}: (.+)", text)
    if match:  # e.g. a task recording its blocks in the ledger, outside any block
        return f"{StoreUnavailable.__name__}: {match.group(1).strip()}"
    worker = _worker_start_failure(text) or _worker_python_failure(text)
    if worker:
        return worker
    if text.startswith(JVM_GONE):
        return text
    lost = _lost_task(text)
    if lost:
        return lost
    # py4j heads the text with the call that failed ("An error occurred while calling
    # z:…collectAndServe."), which says nothing of why
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("An error occurred while calling")]
    return f"Spark job failed: {lines[0].lstrip(': ') if lines else text}"


def _lost_task(text: str) -> str:
    """The cause of the task Spark gave up on, as its scheduler says it ("most recent
    failure: Lost task 90.0 … : org.apache.spark.SparkException: Python worker exited
    unexpectedly (crashed)"); '' when the text has none (trial AD: a killed worker was
    "Spark job failed: An error occurred while calling z:…collectAndServe.")."""
    match = re.search(r"most recent failure: Lost task (\S+) in stage \S+ \(TID \d+\)[^:]*: "
                      r"(?:[\w.$]+\.)?(\w+): ([^\n]+)", text)
    if not match:
        return ""
    task, kind, message = match.group(1), match.group(2), match.group(3).strip()
    if message.startswith("Python worker exited unexpectedly"):
        # what Spark knows beyond it (with its fault handler on: "Fatal Python error: …"),
        # not its advice to turn that handler on
        said = re.sub(r"\s*Consider setting .*$", "", message.removeprefix(
            "Python worker exited unexpectedly (crashed)").lstrip(":. ")).strip()
        return (f"a Python worker died while running task {task} (Spark: Python worker exited "
                f"unexpectedly{': ' + said if said else ''}): a crash, or a signal (by hand, or "
                f"the kernel's out-of-memory killer: a worker's memory is limits.task_memory, "
                f"spark.executor.pyspark.memory; or a bus error: a memory-mapped tile file "
                f"cut short or rewritten while it was read)")
    return f"task {task} failed: {kind}: {message}"


def _worker_python_failure(text: str) -> str:
    """The Python exception a worker raised outside any block (its traceback travels inside
    Spark's text): most often, before its task ran, importing this project's code or a
    dependency that the node's Python lacks; '' when the text holds no Python traceback."""
    header = "Traceback (most recent call last):"
    if header not in text:
        return ""
    last = text.rsplit(header, 1)[1]
    # the frames are indented; the exception is the first line that is not
    cause = next((line.strip() for line in last.splitlines()[1:] if line.strip()
                  and not line[0].isspace()), "")
    if not cause:
        return ""
    if "read_command" in last:   # unpickling the task's function imports our modules
        return f"a Python worker failed before running its task: {cause} ({WORKER_PYTHON})"
    return f"a Python worker failed: {cause}"


def _worker_start_failure(text: str) -> str:
    """The cause when the executor could not start the Python workers, as the JVM says
    it (`Cannot run program "/path/python": error=13, Permission denied`); '' otherwise."""
    match = re.search(r'Cannot run program "([^"]+)"[^:\n]*: error=\d+, ([^\n]+)', text)
    if not match:
        return ""
    return f"the Python workers could not start: {match.group(2).strip()}: {match.group(1)} ({WORKER_PYTHON})"
