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
