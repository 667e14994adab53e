"""Faults Spark must absorb without changing a byte: retried and speculative tasks, and an
executor JVM killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_job

pytestmark = pytest.mark.slow


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(job: Path, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job)]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def clean_run(small_acquisition, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    job = write_job(folder / "job.toml", small_acquisition["paths"]["tiles_json"], "out")
    result = run(job, "output.levels=2", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "out"


def test_retried_and_speculative_tasks_write_identical_objects(small_acquisition, clean_run, tmp_path):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out")
    (tmp_path / "events").mkdir()
    # 4 blocks per task: each hooked block lies in a task of its own, which fails once
    result = run(job, "output.levels=2", "spark.blocks_per_task=4", "spark.master=local[2,4]",
                 "spark.speculation=true",
                 "spark.speculation.multiplier=1", "spark.speculation.quantile=0.1",
                 "debug.fail_blocks=[[0,0,0],[1,2,0],[3,5,0]]", "spark.eventLog.enabled=true",
                 f"spark.eventLog.dir=file://{tmp_path / 'events'}", "spark.eventLog.compress=false",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    events = "".join(p.read_text() for p in (tmp_path / "events").rglob("*") if p.is_file())
    assert events.count('"Reason":"ExceptionFailure"') == 3  # each hooked block failed once
    assert files_under(tmp_path / "out") == files_under(clean_run)


def executor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"CoarseGrainedExecutorBackend" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_an_executor_killed_mid_run_changes_nothing(small_acquisition, clean_run, tmp_path):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out")
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set", "output.levels=2",
            "--set", "spark.master=local-cluster[2,1,1024]", "--set", "debug.task_delay=0.5",
            "--set", "spark.blocks_per_task=4", "--set", "limits.checkpoint_seconds=0"]
    job_run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 180
    while len(list((tmp_path / "out.job").rglob("tasks/*.parquet"))) < 3:
        assert job_run.poll() is None and time.time() < deadline, "no task finished in time"
        time.sleep(0.1)
    victims = executor_pids()
    assert victims, "no executor JVM found"
    os.kill(victims[0], signal.SIGKILL)
    out, err = job_run.communicate(timeout=600)
    assert job_run.returncode == 0, err[-3000:]
    assert files_under(tmp_path / "out") == files_under(clean_run)


def test_a_reader_polling_during_the_run_never_sees_a_partial_dataset(small_acquisition, clean_run, tmp_path):
    """Until the commit tensorstore cannot open the output; once it can, every level is whole."""
    import numpy as np
    import tensorstore as ts
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out")
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set", "output.levels=2",
            "--set", "debug.task_delay=0.1"]
    job_run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "out/c0/s1")}}
    expected = np.asarray(ts.open({**spec, "kvstore": {"driver": "file", "path": str(clean_run / "c0/s1")}})
                          .result().read().result())
    refused, opened = 0, []
    while job_run.poll() is None:
        try:
            opened.append(np.asarray(ts.open(spec).result().read().result()))
        except ValueError:
            refused += 1  # no metadata yet: nothing to open
        time.sleep(0.05)
    assert job_run.returncode == 0, job_run.stderr.read()[-2000:]
    opened.append(np.asarray(ts.open(spec).result().read().result()))
    assert refused > 10, "the reader never polled while the run was in progress"
    for data in opened:  # every successful open saw the whole, final level
        np.testing.assert_array_equal(data, expected)


def test_a_full_disk_fails_cleanly_and_the_rerun_resumes(small_acquisition, clean_run, tmp_path):
    """The output's filesystem fills up mid-job (a 96 KiB tmpfs): exit 1, nothing committed;
    after it grows, the same job resumes from what was recorded and ends like a clean run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True)
    try:
        job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(disk / "out"))
        full = run(job, "output.levels=2", "spark.master=local[1]", cwd=tmp_path)
        assert full.returncode == 1, full.stderr[-2000:]
        assert "No space left on device" in full.stderr and "no metadata was written" in full.stderr
        assert not (disk / "out/attributes.json").exists()
        from pipelines.commit import ledger
        from pipelines.storage import LocalStore
        fingerprint = next((disk / "out.job").iterdir()).name
        recorded = ledger.read_parts(LocalStore(disk), f"out.job/{fingerprint}", objects=False).block_count
        assert recorded > 0
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        rerun = run(job, "output.levels=2", "spark.master=local[1]", cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert f"resuming: {recorded} of" in rerun.stderr
        assert files_under(disk / "out") == files_under(clean_run)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
