"""Spark: the only package that imports pyspark.

`session` starts a session from a job's [spark] settings; `SparkExecutor` runs the
driver's batches of tasks on it (see `pipelines.execute.executor` for the contract).
"""

from pipelines.spark.executor import SparkExecutor
from pipelines.spark.session import session

__all__ = ["SparkExecutor", "session"]
