"""What the run records as its cause when a Spark job fails: with the driver's JVM gone,
str() of py4j's error asked the dead JVM and the run recorded ConnectionRefusedError, or
py4j's bare 'An error occurred while calling z:…collectAndServe' (trial Q)."""

from __future__ import annotations

from pipelines.spark.executor import JVM_GONE, _error_text, _failure_line


class DeadGatewayError(Exception):
    def __str__(self) -> str:
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_job_whose_jvm_is_gone_says_so():
    assert _failure_line(_error_text(DeadGatewayError())) == JVM_GONE
    bare = Exception("An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe")
    assert _failure_line(_error_text(bare)).startswith(JVM_GONE + ": An error occurred")
    refused = Exception("[Errno 111] Connection refused")
    assert _failure_line(_error_text(refused)).startswith(JVM_GONE)


def test_a_job_that_failed_in_spark_keeps_its_own_cause():
    text = ("An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
            ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 3 failed "
            "4 times, most recent failure: ... pipelines.errors.BlockFailed: block [1, 0, 0]: "
            "OSError: disk full\n\tat org.apache...")
    assert _failure_line(_error_text(Exception(text))) == "block [1, 0, 0]: OSError: disk full"
    assert _failure_line("something else\nmore") == "Spark job failed: something else"
    refused = text.replace("OSError: disk full", "EndpointConnectionError: Connection refused")
    assert _failure_line(_error_text(Exception(refused))) == (
        "block [1, 0, 0]: EndpointConnectionError: Connection refused")
    # trial AG: a dependency imported where a block needs it read like a problem of the data
    missing = text.replace("OSError: disk full", "ModuleNotFoundError: No module named 'numba'")
    assert _failure_line(_error_text(Exception(missing))) == (
        "block [1, 0, 0]: ModuleNotFoundError: No module named 'numba' (PYSPARK_PYTHON / "
        "spark.pyspark.python must name a Python with this project's dependencies on every node)")
    mismatched = text.replace("OSError: disk full", "ImportError: numpy.core.multiarray failed to import")
    assert _failure_line(_error_text(Exception(mismatched))).endswith("dependencies on every node)")
    stale = text.replace("OSError: disk full", "ModuleNotFoundError: No module named 'pipelines.pixels.new'")
    assert _failure_line(_error_text(Exception(stale))).endswith(
        "(rebuild dist/pipelines.zip with scripts/package_project.py)")
    renamed = text.replace("OSError: disk full", "ImportError: cannot import name 'x' from 'pipelines.tiles'")
    assert _failure_line(_error_text(Exception(renamed))).endswith(
        "(rebuild dist/pipelines.zip with scripts/package_project.py)")


def test_a_task_spark_gave_up_on_says_its_cause_not_py4j_s_header():
    """Trial AD: a Python worker killed mid-task was 'Spark job failed: An error occurred
    while calling z:…collectAndServe.', the cause only in the saved trace."""
    crashed = ("An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
               ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 90 in stage "
               "0.0 failed 1 times, most recent failure: Lost task 90.0 in stage 0.0 (TID 90) "
               "(localhost executor driver): org.apache.spark.SparkException: Python worker exited "
               "unexpectedly (crashed). Consider setting 'spark.python.worker.faulthandler.enabled' "
               "configuration to 'true' for the better Python traceback.\n\tat org.apache.spark.api")
    line = _failure_line(_error_text(Exception(crashed)))
    assert line.startswith("a Python worker died while running task 90.0 (Spark: Python worker "
                           "exited unexpectedly): a crash, or a signal"), line
    # trial AM: a tile truncated while the run read it killed the worker with SIGBUS
    assert line.endswith("or a bus error: a memory-mapped tile file cut short or rewritten "
                         "while it was read)"), line
    faulted = crashed.replace("(crashed). Consider", "(crashed): Fatal Python error: Segmentation "
                                                    "fault. Consider")
    assert "(Spark: Python worker exited unexpectedly: Fatal Python error: Segmentation fault.)" in \
        _failure_line(_error_text(Exception(faulted)))
    other = crashed.replace("org.apache.spark.SparkException: Python worker exited unexpectedly "
                            "(crashed).", "java.lang.OutOfMemoryError: Java heap space.")
    assert _failure_line(_error_text(Exception(other))).startswith(
        "task 90.0 failed: OutOfMemoryError: Java heap space.")
    header_only = ("An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
                   ": org.apache.spark.SparkException: Job 3 cancelled")
    assert _failure_line(header_only) == "Spark job failed: org.apache.spark.SparkException: Job 3 cancelled"
