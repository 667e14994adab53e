"""The export on a real Spark standalone cluster, shipped the way a cluster user ships it.

A master and one worker are started on loopback from the pip-installed pyspark
(`bin/spark-class ...Master` / `...Worker`: the wheel has no start-master.sh), and the job
is run with `spark-submit --master spark://… --py-files pipelines.zip jobs/export.py JOB`.
The driver and the executor run a Python environment that has the dependencies but not
this project, so every `import pipelines` must come from the zip — as on a cluster whose
nodes never saw this checkout. The result must equal the volume fused in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_job
from pipelines.plan import make_plan
from pipelines.testing.synthetic import make_acquisition
from tests.conftest import ROOT, write_job
from tests.pipeline_helpers import fused_channel, reference_pyramid
from tests.readers import tensorstore_read

pytestmark = [pytest.mark.spark, pytest.mark.slow]

START_TIMEOUT = 60   # s for the master to come up and the worker to register
JOB_TIMEOUT = 240    # s for spark-submit; a hung run fails the test instead of CI


def spark_home() -> Path:
    """The pip-installed pyspark package is a complete SPARK_HOME (bin/, jars/)."""
    spec = importlib.util.find_spec("pyspark")
    return Path(spec.origin).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def package_project():
    """scripts/package_project.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("package_project", ROOT / "scripts/package_project.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_without_project(folder: Path) -> Path:
    """A venv whose site-packages reaches ours through a .pth line, so it has every
    dependency but not the editable install of this project (a path line in a .pth adds a
    folder to sys.path without processing the .pth files in it). Returns its python."""
    venv.create(folder, with_pip=False, symlinks=True)
    python = folder / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def master_state(webui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json", timeout=5) as reply:
        return json.load(reply)


@dataclass
class Cluster:
    url: str            # spark://127.0.0.1:PORT
    webui_port: int
    work_dir: Path      # the worker's --work-dir: one folder per application and executor
    env: dict           # the environment a user of this cluster submits with
    logs: Path


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the worker kills its executors on the way out), then SIGKILL; finally
    SIGKILL whatever is left in the process group we created for it (an orphaned executor)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    """One master and one worker (2 cores, 2 GiB) on 127.0.0.1; stopped after the test.

    Everything Spark writes stays under tmp_path: logs (spark-class logs to stderr, kept
    in logs/), the worker's work dir, scratch space (SPARK_LOCAL_DIRS) and an empty
    SPARK_CONF_DIR, so settings of this machine cannot change the test.
    """
    home = spark_home()
    logs, work, local, conf = (tmp_path / name for name in ("logs", "work", "local", "spark-conf"))
    for folder in (logs, work, local, conf):
        folder.mkdir()
    python = python_without_project(tmp_path / "env")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "SPARK_CONF_DIR")}
    env.update(SPARK_HOME=str(home), SPARK_CONF_DIR=str(conf), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOCAL_DIRS=str(local), SPARK_WORKER_DIR=str(work), SPARK_LOG_DIR=str(logs),
               SPARK_PID_DIR=str(logs), PYSPARK_PYTHON=str(python))
    port, webui, worker_webui = free_port(), free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master",
                   "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", url,
                   "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
                   "--work-dir", str(work), "--webui-port", str(worker_webui)],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_worker(procs, webui, logs)
        yield Cluster(url, webui, work, env, logs)
    finally:
        for name in ("worker", "master"):
            if name in procs:
                _stop(procs[name])


def _wait_for_worker(procs: dict, webui: int, logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"the {name} exited with {proc.returncode}:\n"
                            f"{(logs / f'{name}.log').read_text()[-3000:]}")
        try:
            if master_state(webui).get("aliveworkers", 0) >= 1:
                return
        except OSError:
            pass  # the master's web UI is not up yet
        time.sleep(0.5)
    pytest.fail("no worker registered with the master in time:\n"
                + "\n".join((logs / f"{n}.log").read_text()[-2000:] for n in procs))


def test_export_runs_on_a_standalone_cluster_from_a_zip(cluster, tmp_path):
    acquisition = make_acquisition(tmp_path / "acq", grid=(2, 2, 1), tile=(64, 48, 16),
                                   jitter=0, falloff=0, noise=False)
    job = write_job(tmp_path / "job.toml", acquisition["paths"]["tiles_json"], "out",
                    'format = "n5"\nlevels = 2')
    dist = package_project().build_zip(ROOT / "pipelines", tmp_path / "dist" / "pipelines.zip")
    # the job script by absolute path, run from tmp_path: nothing but the zip provides
    # `pipelines` (the environment's python cannot import it, checked first)
    python = cluster.env["PYSPARK_PYTHON"]
    probe = subprocess.run([python, "-c", "import numpy, pyspark, tifffile; import pipelines"],
                           cwd=tmp_path, env=cluster.env, capture_output=True, text=True)
    assert "No module named 'pipelines'" in probe.stderr, (  # (a non-editable install would be seen)
        f"the cluster's Python must not see this package:\n{probe.stderr}")
    # as docs/clusters.md tells a user with two machines, plus no UI (no port to take)
    submit = [str(spark_home() / "bin" / "spark-submit"), "--master", cluster.url,
              "--properties-file", str(ROOT / "conf" / "spark-standalone.conf"),
              "--conf", "spark.ui.enabled=false", "--py-files", str(dist),
              str(ROOT / "jobs" / "export.py"), str(job)]
    result = subprocess.run(submit, cwd=tmp_path, env=cluster.env, capture_output=True,
                            text=True, timeout=JOB_TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"spark:    master {cluster.url}" in result.stdout

    plan = make_plan(load_job(job))
    expected = reference_pyramid(fused_channel(plan), plan, "mean")
    for level, reference in enumerate(expected):
        got = tensorstore_read(str(tmp_path / "out"), f"c0/s{level}", "n5")
        np.testing.assert_array_equal(got, reference, err_msg=f"level {level}")
    truth = np.load(acquisition["paths"]["ground_truth"])
    assert np.abs(expected[0].astype(float) - truth).max() <= 1  # no noise, no falloff

    # the tasks ran on the worker's executor, which fetched the zip into its work dir
    executors = list(cluster.work_dir.glob("app-*/*/stderr"))
    assert len(executors) >= 1, sorted(cluster.work_dir.rglob("*"))
    assert (executors[0].parent / "pipelines.zip").is_file()
    assert "Running task" in executors[0].read_text()
    apps = master_state(cluster.webui_port)["completedapps"]
    assert [app["state"] for app in apps] == ["FINISHED"]


def test_an_executor_larger_than_every_worker_is_named(cluster, tmp_path):
    """Trial AG: spark.executor.memory above what any worker has (this one: 2 GiB) left
    the job at 0 % for ever with only Spark's "Initial job has not accepted any
    resources". After EXECUTOR_WAIT_SECONDS without an executor the job says what it
    waits for, once; Ctrl-C then stops it as usual."""
    acquisition = make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(32, 32, 8),
                                   jitter=0, falloff=0, noise=False)
    job = write_job(tmp_path / "job.toml", acquisition["paths"]["tiles_json"], "out")
    command = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "jobs" / "export.py"), str(job),
               "--set", f"spark.master={cluster.url}", "--set", "spark.executor.memory=3g",
               "--set", "spark.ui.enabled=false"]
    env = {**cluster.env, "PYSPARK_PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("warning: no executor has started"):
                break
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    warned = [line for line in lines + err.splitlines(keepends=True)
              if line.startswith("warning: no executor has started")]
    assert len(warned) == 1, "".join(lines)[-4000:] + err[-2000:]
    assert f"on {cluster.url}" in warned[0] and "spark.executor.memory = '3g'" in warned[0], warned[0]
    assert proc.returncode != 0 and "interrupted" in (out + err).lower(), (proc.returncode, out[-2000:], err[-2000:])
