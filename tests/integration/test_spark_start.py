"""When Spark cannot start, or its Python workers cannot, the job says why in one line:
no Java stack trace before it, and the cause (a permission error on the worker's Python)
in it rather than only py4j's "An error occurred while calling …"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_job

pytestmark = pytest.mark.slow


def export(job: Path, *overrides: str, env: dict[str, str | None] | None = None
           ) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job)]
    for item in overrides:
        args += ["--set", item]
    merged = {**os.environ, **(env or {})}   # a value of None removes the variable
    return subprocess.run(args, capture_output=True, text=True, cwd=job.parent, timeout=300,
                          env={k: v for k, v in merged.items() if v is not None})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens once it is closed


def only_lines(stderr: str, prefix: str) -> list[str]:
    """The lines of the job's own output, after checking nothing else (a Java trace,
    Spark's start-up chatter) was printed."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith(prefix) for line in lines), stderr[-3000:]
    return lines


@pytest.mark.parametrize("master,expected", [
    ("bogus", "expected local[N] (N ≥ 1), local[*], local-cluster[N, cores, MiB], "
              "spark://host:port, yarn or k8s://"),
    ("local[0]", "expected local[N] (N ≥ 1)"),
    ("spark://nohost.invalid:7077", "cannot reach the Spark master nohost.invalid:7077"),
    ("spark://127.0.0.1:{port}", "cannot reach the Spark master 127.0.0.1:{port}"),
    ("local[two]", "expected local[N]"),
    # a form Spark knows, refused by Spark itself: the JVM's reason, without its trace
    ("yarn", "either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the environment"),
])
def test_a_bad_spark_master_is_one_line_without_a_java_trace(small_acquisition, tmp_path,
                                                             master, expected):
    port = closed_port()
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    began = time.monotonic()
    run = export(job, f"spark.master={master.format(port=port)}",
                 env={"HADOOP_CONF_DIR": None, "YARN_CONF_DIR": None})
    seconds = time.monotonic() - began
    lines = only_lines(run.stderr, "error: ")
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
    assert expected.format(port=port) in lines[0], lines[0]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()], "nothing written"
    assert seconds < 30, f"{seconds:.0f} s to refuse a master that cannot work"


def test_spark_submit_to_a_master_nobody_answers_for_is_one_line_at_once(small_acquisition, tmp_path):
    """Trial AG: spark-submit --master spark://… where no master runs ended, after a
    minute of Java stack traces, in "Cannot call methods on a stopped SparkContext"."""
    port = closed_port()
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    began = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).parent / "spark-submit"), "--master",
                          f"spark://127.0.0.1:{port}", str(ROOT / "jobs/export.py"), str(job)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    assert (f"error: spark.master = 'spark://127.0.0.1:{port}': cannot reach the Spark master "
            f"127.0.0.1:{port}") in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    assert time.monotonic() - began < 40
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()], "nothing written"


@pytest.mark.parametrize("setting,expected", [
    # the JVM refuses its own options and exits before Spark runs
    ("spark.driver.memory=2x", "Java refused its options: Invalid maximum heap size: -Xmx2x"),
    # Spark refuses inside the JVM: py4j's "An error occurred while calling …" hid the reason
    ("spark.driver.memory=100m", "SparkIllegalArgumentException: [INVALID_DRIVER_MEMORY"),
    # a heap too small for Java's own start: it printed only "A JNI error has occurred,
    # please check your installation", and the job said JAVA_GATEWAY_EXITED (trial M)
    ("spark.driver.memory=16m", "heap is too small to start (spark.driver.memory"),
    # Java refuses it on stdout ('Too small maximum heap'): nothing held on stderr (trial S)
    ("spark.driver.memory=1m", "Java could not start with spark.driver.memory = 1m"),
])
def test_a_setting_that_stops_spark_starting_is_its_reason_in_one_line(small_acquisition,
                                                                        tmp_path, setting, expected):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    run = export(job, setting)
    lines = only_lines(run.stderr, "error: ")
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
    assert "cannot start Spark" in lines[0] and expected in lines[0], lines[0]
    assert "An error occurred while calling" not in lines[0]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()], "nothing written"


@pytest.mark.parametrize("python,cause,given", [
    ("not-executable", "Permission denied", "environment"),
    ("missing", "No such file or directory", "environment"),
    ("not-executable", "Permission denied", "job file"),
])
def test_python_workers_that_cannot_start_say_why(small_acquisition, tmp_path, python, cause,
                                                  given):
    """PYSPARK_PYTHON, or the job file's spark.pyspark.python (which pyspark itself reads
    only under spark-submit), names a Python the workers cannot start."""
    interpreter = tmp_path / "python3"
    if python == "not-executable":
        interpreter.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        interpreter.chmod(0o644)
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    if given == "environment":
        run = export(job, env={"PYSPARK_PYTHON": str(interpreter)})
    else:
        run = export(job, f"spark.pyspark.python={interpreter}")
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed:")]
    assert run.returncode == 1 and len(failed) == 1, run.stderr[-3000:]
    assert f"the Python workers could not start: {cause}: {interpreter}" in failed[0], failed[0]
    assert "An error occurred while calling" not in failed[0]
    assert "Traceback" not in run.stderr and "\tat " not in run.stderr, run.stderr[-3000:]


def test_python_workers_that_fail_to_import_our_code_say_why(small_acquisition, tmp_path):
    """Defect (a user's trial): workers on an environment without a dependency (numcodecs
    without CRC32C) failed at import, before any block, and the line said only `Spark job
    failed: An exception was thrown from the Python worker:`, the cause in the log."""
    shadow = tmp_path / "shadow" / "numcodecs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no numcodecs on this node")\n')
    interpreter = tmp_path / "python3"
    interpreter.write_text(f'#!/bin/sh\nPYTHONPATH={shadow.parent}:$PYTHONPATH exec {sys.executable} "$@"\n')
    interpreter.chmod(0o755)
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    run = export(job, env={"PYSPARK_PYTHON": str(interpreter)})
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed:")]
    assert run.returncode == 1 and len(failed) == 1, run.stderr[-3000:]
    assert ("a Python worker failed before running its task: ImportError: no numcodecs on this "
            "node") in failed[0], failed[0]
    assert "(PYSPARK_PYTHON / spark.pyspark.python" in failed[0]


@pytest.mark.parametrize("master", ["local", "local[*]", "local[2]", "local[2,4]", "local[*, 3]",
                                    "local-cluster[2, 1, 1024]", "yarn", "k8s://https://api:6443"])
def test_every_master_form_spark_knows_passes_the_check(master):
    from pipelines.spark.session import check_master
    check_master(master)


def test_a_standalone_master_that_listens_passes_the_check():
    from pipelines.spark.session import check_master
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_master(f"spark://127.0.0.1:{closed_port()},127.0.0.1:{port}")   # a standby list


JVM_ARGUMENTS = """
import sys
from pipelines.config import load_job
from pipelines.spark.session import session
spark = session(load_job(sys.argv[1], sys.argv[2:]))
bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print(" ".join(bean.getInputArguments()))
sc = spark.sparkContext
print(sc.getConf().get("spark.python.unix.domain.socket.enabled", "unset"),
      sc.getConf().get("spark.python.daemon.module", "unset"),
      type(sc._accumulatorServer).__name__,
      sc.parallelize(range(4), 2).map(lambda x: x * x).sum())   # workers answer either way
spark.stop()
"""


def test_the_driver_jvm_compiles_with_c1_and_talks_to_python_over_unix_sockets_unless_the_job_says_otherwise(
        small_acquisition, tmp_path):
    """A session this project starts runs its driver JVM with -XX:TieredStopAtLevel=1
    (session.DRIVER_JAVA_OPTIONS) and, with Spark ≥ 4.1, reaches its Python workers (from
    our daemon module) and accumulator server over Unix domain sockets
    (session.PYTHON_SOCKETS); a job's own spark.driver.extraJavaOptions or
    spark.python.unix.domain.socket.enabled replaces each."""
    from pipelines.spark.session import python_sockets_supported
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    own = ["spark.driver.extraJavaOptions=-Dtests.own=1",
           "spark.python.unix.domain.socket.enabled=false"]
    runs = [subprocess.Popen([sys.executable, "-c", JVM_ARGUMENTS, str(job), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path) for extra in ([], own)]
    default, replaced = (run.communicate(timeout=300) for run in runs)
    assert [run.returncode for run in runs] == [0, 0], default[1][-2000:] + replaced[1][-2000:]
    default_lines, replaced_lines = default[0].splitlines(), replaced[0].splitlines()
    assert "-XX:TieredStopAtLevel=1" in default_lines[0].split()
    assert "-Dtests.own=1" in replaced_lines[0].split()
    assert "-XX:TieredStopAtLevel=1" not in replaced_lines[0].split()
    assert default_lines[1].split() == (
        ["true", "pipelines.spark.daemon", "AccumulatorUnixServer", "14"]
        if python_sockets_supported() else ["unset", "unset", "AccumulatorTCPServer", "14"])
    assert replaced_lines[1].split() == ["false", "unset", "AccumulatorTCPServer", "14"]


def test_python_sockets_only_for_local_sessions_on_this_interpreter_not_set_by_the_job(
        small_acquisition, tmp_path, monkeypatch):
    """PYTHON_SOCKETS (Unix sockets and our daemon module) need `pipelines` importable
    where the workers start: only local masters started here with workers on this
    interpreter get them, and a job's own value of either property stays."""
    from pipelines.config import load_job
    from pipelines.spark.session import python_sockets_default, python_sockets_supported
    path = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)

    def default(*overrides: str) -> bool:
        return python_sockets_default(load_job(path, list(overrides)))
    assert default("spark.master=local[2]") is python_sockets_supported()
    assert default("spark.master=local-cluster[2,1,1024]") is python_sockets_supported()
    assert default("spark.master=spark://127.0.0.1:7077") is False   # --py-files come later
    assert default("spark.master=local[2]", "spark.python.unix.domain.socket.enabled=false") is False
    assert default("spark.master=local[2]", "spark.python.daemon.module=my.daemon") is False
    monkeypatch.setenv("PYSPARK_PYTHON", "/some/other/python")
    assert default("spark.master=local[2]") is False
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")   # under spark-submit
    assert default("spark.master=local[2]") is False


IDLE_WORKERS = """
import sys, time
from pipelines.config import load_job
from pipelines.execute.executor import Batch
from pipelines.spark import SparkExecutor
from pipelines.spark.session import session
spark = session(load_job(sys.argv[1], sys.argv[2:]))
executor = SparkExecutor(spark=spark)
square = Batch(lambda shared, item, attempt: item * item, None, [1, 2, 3, 4], "squares")
print(sum(executor.run(square, lambda *_: None)), flush=True)
time.sleep(75)   # Spark stops Python workers idle for a minute
print(sum(executor.run(square, lambda *_: None)), flush=True)
spark.stop()
"""


@pytest.mark.slow
def test_python_workers_stopped_for_idling_leave_no_traceback(small_acquisition, tmp_path):
    """Over Unix domain sockets, pyspark's daemon prints a BrokenPipeError traceback for
    every worker Spark stops after a minute of idling (a driver busy between two jobs);
    our daemon module lets them exit quietly (`pipelines.spark.daemon`), and the workers
    started after it run the next job."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    run = subprocess.run([sys.executable, "-c", IDLE_WORKERS, str(job), "spark.master=local[2]"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["30", "30"]
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr[-3000:]


def test_a_near_miss_of_a_spark_property_is_named_with_the_one_meant(spark):
    """Spark takes any property name in silence, so `executor.memroy` left executors at
    the default memory; names Spark knows, and names close to none of them (Hadoop's,
    a plugin's), pass without a word."""
    from pipelines.config import build_config
    from pipelines.spark.session import misspelled_properties
    config = build_config({"input": {"tiles": "unused.json"}, "output": {"uri": "out"},
                           "spark": {"executor.memroy": "4g", "executor.memory": "4g",
                                     "task.maxFailures": 4, "hadoop.fs.s3a.endpoint": "x",
                                     "myplugin.level": "high"}})
    assert misspelled_properties(spark, config) == [
        "spark.executor.memroy is not a Spark property (Spark ignores it); did you mean "
        "spark.executor.memory?"]


def test_a_cap_on_the_python_workers_address_space_is_warned_of():
    """Trial M: spark.executor.pyspark.memory, which docs/clusters.md says not to use
    (memory-mapped tiles count whole in the address space it caps), passed in silence."""
    from pipelines.spark.session import address_space_cap
    assert address_space_cap(None) == []
    warned, = address_space_cap("300m")
    assert warned.startswith("spark.executor.pyspark.memory = 300m caps each Python worker's "
                             "address space") and "limits.task_memory" in warned


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_spark_starts_leaves_no_jvm(small_acquisition, tmp_path, signal_name):
    """Trial M: Ctrl-C (or a kill of the driver) in the first seconds, while the JVM
    started, left it running under init until killed by hand (it ignores SIGINT, and its
    py4j server waited for a Python that was gone)."""
    import signal
    out = tmp_path / f"start-{signal_name}"
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(out))
    driver = subprocess.Popen([sys.executable, str(ROOT / "jobs/export.py"), str(job),
                               "--set", "spark.master=local[1]"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    began = time.monotonic()
    try:
        # the launch's command lines name the app, which names the output (spark-submit's
        # launcher among them comes and goes: it is looked for once per step)
        launched: list[int] = []
        while not launched and time.monotonic() - began < 120:
            assert driver.poll() is None, "the driver ended before its JVM started"
            launched = _processes_naming(f"tile-pipelines: {out}")
            time.sleep(0.05)
        assert launched, "the JVM never started"
        driver.send_signal(getattr(signal, signal_name))
        driver.wait(timeout=60)
        deadline = time.monotonic() + 20
        while _processes_naming(f"tile-pipelines: {out}") and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _processes_naming(f"tile-pipelines: {out}")
    finally:   # nothing left for the next test either
        if driver.poll() is None:
            driver.kill()
        for pid in _processes_naming(f"tile-pipelines: {out}"):
            os.kill(pid, signal.SIGKILL)
    assert driver.returncode == 128 + getattr(signal, signal_name)
    assert not left, f"processes left running: {left}"
