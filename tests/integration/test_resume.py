"""Driver loss: kill the driver midway, rerun the same job, and only the rest is computed."""

from __future__ import annotations

import os
import re
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


def export(job: Path, *overrides: str, cwd: Path, **kwargs) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job)]
    for item in overrides:
        args += ["--set", item]
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kwargs)


@pytest.mark.parametrize("per_task", [
    ["spark.blocks_per_task=1"],   # 96 tasks of one block
    ["spark.blocks_per_task=4", "limits.checkpoint_seconds=0"],   # 24 tasks, a part per block
])
def test_killed_driver_resumes_only_the_remaining_blocks(small_acquisition, tmp_path, per_task):
    tiles = small_acquisition["paths"]["tiles_json"]
    job = write_job(tmp_path / "job.toml", tiles, "out/volume", "")
    settings = ["output.block=[1,1,1]", "spark.master=local[1]", *per_task]  # 96 blocks, one task at a time
    clean_job = write_job(tmp_path / "clean.toml", tiles, "clean/volume", "")
    clean = export(clean_job, *settings, cwd=tmp_path)
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-2000:]

    first = export(job, *settings, "debug.task_delay=0.2", cwd=tmp_path)
    ledger = tmp_path / "out/volume.job"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(ledger.rglob("tasks/*.parquet"))) < 40:
        assert first.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its JVM, mid-run
    first.wait(timeout=60)
    recorded = len(list(ledger.rglob("tasks/*.parquet")))
    assert 40 <= recorded < 96

    second = export(job, *settings, cwd=tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    resumed = int(re.search(r"resuming: (\d+) of 96 blocks", err).group(1))
    assert resumed >= recorded
    assert re.search(rf"^blocks {96 - resumed}/{96 - resumed} \(100%\)", err, re.M), err[-1500:]
    assert files_under(tmp_path / "out/volume") == files_under(tmp_path / "clean/volume")
    assert not list(ledger.rglob("tasks/*.parquet")) and list(ledger.rglob("objects.parquet"))
