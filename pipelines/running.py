"""The executor a job runs on: the one a caller hands in, or Spark started from the
job's [spark] settings. The one place the flows (`driver`, `registering`, `corrections`
through the console scripts) reach for Spark, imported only then."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.config import JobConfig
from pipelines.errors import job
from pipelines.execute.executor import Executor


@contextmanager
def executor_for(config: JobConfig, given: Executor | None) -> Iterator[Executor]:
    """The executor to use: the one handed in (left running), or Spark from the job's
    [spark] settings (stopped at the end); a `errors.job` span, so a flow called outside
    `run_job` (a notebook's) begins without an earlier job's stop."""
    with job():
        yield from _executor(config, given)


def _executor(config: JobConfig, given: Executor | None) -> Iterator[Executor]:
    if given is not None:
        yield given
        return
    from pipelines.spark import SparkExecutor  # pyspark is imported only to run on Spark
    from pipelines.spark.session import under_spark_submit

    executor = SparkExecutor(config)
    try:
        if under_spark_submit():
            # at once, whatever follows: YARN's cluster mode fails an application whose
            # driver made no SparkContext ("User did not initialize spark context!", exit
            # 13, then a second attempt), a rerun with nothing to do or only a commit left
            # included (review of 397b202); spark-submit has started the JVM already
            executor.start()
        yield executor
    finally:
        executor.stop()
