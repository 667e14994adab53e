"""A frozen S3 endpoint (a moto server in its own process, SIGSTOPped mid-export): the job
ends within the bound the job sets (s3.request_timeout × s3.max_attempts), in one line
naming the endpoint and the bound, exit 1, and saves the trace on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import ROOT, write_job

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_moto(tmp_path):
    """A moto server in a process of its own (so it can be frozen) with bucket "frozen":
    (endpoint, process). Thawed and stopped at the end, whatever the test did to it."""
    port = free_port()
    with open(tmp_path / "local_s3.log", "w") as log:   # what the server said, if it misbehaves
        server = subprocess.Popen([sys.executable, str(ROOT / "scripts/local_s3.py"), "--port",
                                   str(port), "--bucket", "frozen", "--verbose"],
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert server.stdout is not None and "local S3 at" in server.stdout.readline()
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            # Twice in fresh-clone CI (two workers, after a thaw with requests in flight) the
            # server outlived SIGTERM; cause not found (local_s3.py's own stop is tested in
            # test_local_s3.py). Killed, so no process is left behind either way.
            server.kill()
            server.wait(15)


def wait_for_a_ledger_part(endpoint: str, job: subprocess.Popen, limit: float = 120) -> None:
    client = boto3.client("s3", endpoint_url=endpoint,
                          config=Config(read_timeout=5, retries={"total_max_attempts": 1}))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()[1][-3000:]
        listing = client.list_objects_v2(Bucket="frozen", Prefix="out/volume.job/")
        if any("/tasks/" in o["Key"] for o in listing.get("Contents", [])):
            return
        time.sleep(0.1)
    raise AssertionError("no task recorded its blocks in time")


def start_export(job: Path, endpoint: str, cwd: Path, *settings: str, **popen) -> subprocess.Popen:
    """The export of `job` against `endpoint`, slowed to half a second per one-block task."""
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set",
            f"s3.endpoint_url={endpoint}", "--set", "debug.task_delay=0.5", "--set",
            "spark.blocks_per_task=1"]
    for item in settings:
        args += ["--set", item]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, **popen)


def thaw_and_resume(server: subprocess.Popen, job: Path, endpoint: str, cwd: Path) -> None:
    """Once the endpoint answers again, the same job takes over the lock it left and resumes."""
    os.kill(server.pid, signal.SIGCONT)
    rerun = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set",
                            f"s3.endpoint_url={endpoint}"], capture_output=True, text=True,
                           cwd=cwd, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming: " in rerun.stderr, rerun.stderr[-3000:]


def freeze_mid_run(run: subprocess.Popen, endpoint: str, server, timeout: float,
                   interrupt: bool = False) -> tuple[str, float]:
    """Once the export `run` has recorded a ledger part, freeze the endpoint (SIGSTOP);
    with `interrupt`, Ctrl-C the job's process group a second later (requests in flight
    then wait on the frozen endpoint). Returns the job's stderr and the seconds from the
    freeze (or the Ctrl-C) to its exit; a job still running after `timeout` is killed
    (its whole group when it was interrupted: it runs in a session of its own)."""
    try:
        wait_for_a_ledger_part(endpoint, run)
        os.kill(server.pid, signal.SIGSTOP)
        if interrupt:
            time.sleep(1)
            os.killpg(run.pid, signal.SIGINT)
        began = time.monotonic()
        _, err = run.communicate(timeout=timeout)
        return err, time.monotonic() - began
    finally:
        if run.poll() is None:
            if interrupt:
                os.killpg(run.pid, signal.SIGKILL)
            else:
                run.kill()


def test_a_frozen_endpoint_ends_the_job_in_one_line_within_the_bound(small_acquisition, own_moto,
                                                                     tmp_path: Path):
    endpoint, server = own_moto
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    "s3://frozen/out/volume")
    run = start_export(job, endpoint, tmp_path, "s3.request_timeout=1", "s3.max_attempts=2")
    err, seconds = freeze_mid_run(run, endpoint, server, timeout=120)
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert run.returncode == 1 and len(failed) == 1, err[-3000:]
    line = failed[0]
    assert f"the S3 endpoint {endpoint} did not answer within 1 s × 2 attempts" in line, line
    assert "(s3.request_timeout × s3.max_attempts)" in line and "no metadata was written" in line
    assert "Traceback" not in err and "could not be saved" not in line, err[-3000:]
    logs = list(tmp_path.glob("volume.error-*.log"))
    assert len(logs) == 1 and f"the full trace is in {logs[0]}" in line, line
    assert "StoreUnavailable" in logs[0].read_text()
    assert seconds < 45, f"the job took {seconds:.0f} s to report the stall"
    print(f"stall reported {seconds:.1f} s after the endpoint froze")
    thaw_and_resume(server, job, endpoint, tmp_path)


@pytest.mark.parametrize("tool", ["verify", "clean"])
def test_verify_and_clean_on_a_frozen_endpoint_end_in_one_line(own_moto, tmp_path: Path, tool):
    endpoint, server = own_moto
    os.kill(server.pid, signal.SIGSTOP)
    began = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / f"jobs/{tool}.py"), "s3://frozen/out/volume",
                          "--set", f"s3.endpoint_url={endpoint}", "--set", "s3.request_timeout=1",
                          "--set", "s3.max_attempts=2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    seconds = time.monotonic() - began
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
    assert f"{endpoint} did not answer within 1 s × 2 attempts" in lines[0], lines[0]
    assert seconds < 30, f"{seconds:.0f} s"


def test_ctrl_c_while_the_endpoint_is_frozen_ends_at_once(small_acquisition, own_moto, tmp_path: Path):
    """Ctrl-C (SIGINT to the process group) after the endpoint froze, with the default
    bound (30 s x 5 attempts per request): the job does not wait out the bound to mark its
    record — it gives the store INTERRUPT_SECONDS, says the record was not marked, exits
    130; once the endpoint answers, the same command takes over the lock and resumes."""
    from pipelines.commit.endings import INTERRUPT_SECONDS
    endpoint, server = own_moto
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    "s3://frozen/out/volume")
    run = start_export(job, endpoint, tmp_path, start_new_session=True)
    err, seconds = freeze_mid_run(run, endpoint, server, timeout=240, interrupt=True)
    last = err.strip().splitlines()[-1]
    assert run.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert last == (f"interrupted; the output's store did not answer within {INTERRUPT_SECONDS:.0f} s, "
                    f"so the job record was not marked; run the same command again to resume"), err[-3000:]
    # the bound would be 150 s per request, twice (listing the ledger, writing the record)
    assert seconds < 90, f"{seconds:.0f} s from Ctrl-C to exit"
    print(f"Ctrl-C to exit: {seconds:.1f} s")
    thaw_and_resume(server, job, endpoint, tmp_path)
