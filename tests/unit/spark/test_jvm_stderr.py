"""The JVM's stderr while Spark starts (`pipelines.spark.jvm_stderr`), through real pipes:
on success the held lines are written out without the start-up notices every session
prints; on failure the JVM's own reason is one line."""

from __future__ import annotations

import os

from pipelines.spark.jvm_stderr import HeldStderr, java_reason, jvm_reason

START = (b"WARNING: Using incubator modules: jdk.incubator.vector\n"
         b"Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties\n"
         b'Setting default log level to "WARN".\n'
         b"To adjust logging level use sc.setLogLevel(newLevel). For SparkR, use "
         b"setLogLevel(newLevel).\n"
         b"26/12/06 13:06:44 WARN NativeCodeLoader: Unable to load native-hadoop library for "
         b"your platform... using builtin-java classes where applicable\n")


def relayed(held_bytes: bytes, later: bytes) -> bytes:
    """What reaches the target: `held_bytes` written before `release`, `later` after."""
    jvm_read, jvm_write = os.pipe()
    target_read, target_write = os.pipe()
    held = HeldStderr(jvm_read, target_write)
    os.write(jvm_write, held_bytes)
    while len(held.held) < len(held_bytes):   # the relay thread has taken it all
        held.thread.join(0.01)
    held.release()
    os.write(jvm_write, later)
    os.close(jvm_write)
    held.thread.join(5)
    os.close(target_write)
    with os.fdopen(target_read, "rb") as out:
        return out.read()


def test_start_notices_are_dropped_and_everything_else_passes():
    other = b"26/12/06 13:06:45 WARN Utils: Service 'SparkUI' could not bind on port 4040.\n"
    later = b"WARN NativeCodeLoader: Unable to load native-hadoop library (after the start)\n"
    assert relayed(START + other, later) == other + later


def test_the_jvm_refusing_its_options_is_its_own_line():
    text = ("WARNING: Using incubator modules: jdk.incubator.vector\n"
            "Invalid maximum heap size: -Xmx2x\n"
            "Error: Could not create the Java Virtual Machine.\n"
            "Error: A fatal exception has occurred. Program will exit.\n")
    assert jvm_reason(text) == "Java refused its options: Invalid maximum heap size: -Xmx2x"
    assert jvm_reason('Exception in thread "main" org.apache.spark.SparkException: When '
                      'running with master \'yarn\' either HADOOP_CONF_DIR or YARN_CONF_DIR '
                      'must be set\n\tat x') == (
        "SparkException: When running with master 'yarn' either HADOOP_CONF_DIR or "
        "YARN_CONF_DIR must be set")
    assert jvm_reason("some other output\n") == ""


def test_a_java_that_ends_without_naming_its_exception_is_said_to_be_short_of_heap():
    # spark.driver.memory = "16m": what Java printed (its installation is fine)
    text = ("WARNING: Using incubator modules: jdk.incubator.vector\n"
            "Error: A JNI error has occurred, please check your installation and try again\n"
            'Exception in thread "main" ')
    assert "heap is too small to start (spark.driver.memory" in jvm_reason(text)
    assert "installation" not in jvm_reason(text)


def test_a_java_exception_raised_through_py4j_is_its_class_and_message():
    raised = Exception("An error occurred while calling None.org.apache.spark.api.java."
                       "JavaSparkContext.\n: org.apache.spark.SparkException: Asked to run "
                       "locally with 0 threads\n\tat org.apache.spark.SparkContext$.x(y.scala:1)")
    assert java_reason(raised) == "SparkException: Asked to run locally with 0 threads"
    assert java_reason(Exception("[JAVA_GATEWAY_EXITED] Java gateway process exited")) == ""


def test_heaps_java_or_spark_cannot_start_with_say_spark_driver_memory():
    """Trial S: "1m" gave Java's 'Too small maximum heap' then JAVA_GATEWAY_EXITED, "4m"
    'OutOfMemoryError: Java heap space', neither naming spark.driver.memory."""
    too_small = ("Error occurred during initialization of VM\n"
                 "Too small maximum heap\n")
    assert jvm_reason(too_small) == ("Java could not start: Too small maximum heap (spark.driver."
                                     "memory: Spark needs at least 450m)")
    out_of_memory = 'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n\tat x'
    assert jvm_reason(out_of_memory).endswith("Java heap space (spark.driver.memory: Spark needs "
                                              "at least 450m)")
    assert "450m" not in jvm_reason("Error occurred during initialization of VM\nsomething else\n")
    # review J: a heap too large, or a limit on threads, is not told to grow
    for other in ("Error occurred during initialization of VM\nCould not reserve enough space for "
                  "2097152KB object heap\n",
                  'Exception in thread "main" java.lang.OutOfMemoryError: unable to create native thread'):
        assert "450m" not in jvm_reason(other), other


def test_driver_memory_settings_below_what_spark_needs_are_told_apart():
    from pipelines.spark.session import _below_450m
    assert [m for m in ("1m", "1k", "300", "449m", "450m", "2g", "1G", "512mb", "2x") if _below_450m(m)] == \
        ["1m", "1k", "300", "449m"]
