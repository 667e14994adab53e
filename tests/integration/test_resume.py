"""Driver loss: kill the driver midway, rerun the same job, and only the rest is computed;
the result equals a clean run byte for byte."""

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


# Every run here: 96 blocks of one chunk, one task at a time
BLOCKS = ["output.block=[1,1,1]", "spark.master=local[1]"]


@pytest.fixture(scope="module")
def clean(small_acquisition, tmp_path_factory) -> dict[int, Path]:
    """Clean, uninterrupted exports with one and with two pyramid levels, run side by side
    once for the module (how many blocks a task holds does not change the bytes, so every
    test compares against these)."""
    tiles = small_acquisition["paths"]["tiles_json"]
    root = tmp_path_factory.mktemp("clean")
    runs = {levels: export(write_job(root / f"clean{levels}.toml", tiles, f"levels{levels}/volume", ""),
                           *BLOCKS, f"output.levels={levels}", cwd=root)
            for levels in (1, 2)}
    for run in runs.values():
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    return {levels: root / f"levels{levels}/volume" for levels in runs}


def a_stopped_run(tmp_path: Path, tiles: str, settings: list[str], parts: int,
                  sig: int = signal.SIGKILL) -> tuple[Path, subprocess.Popen]:
    """The job into out/volume, slowed down and sent `sig` (to its whole process group) once
    its ledger holds `parts` parts; returns the job file and the stopped process."""
    job = write_job(tmp_path / "job.toml", tiles, "out/volume", "")
    first = export(job, *settings, "debug.task_delay=0.2", cwd=tmp_path)
    ledger = tmp_path / "out/volume.job"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(ledger.rglob("tasks/*.parquet"))) < parts:
        assert first.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.05)
    os.killpg(first.pid, sig)
    return job, first


@pytest.mark.parametrize("per_task", [
    ["spark.blocks_per_task=1"],   # 96 tasks of one block
    ["spark.blocks_per_task=4", "limits.checkpoint_seconds=0"],   # 24 tasks, a part per block
])
def test_killed_driver_resumes_only_the_remaining_blocks(small_acquisition, clean, tmp_path, per_task):
    settings = [*BLOCKS, *per_task]
    # the driver and its JVM, mid-run
    job, first = a_stopped_run(tmp_path, small_acquisition["paths"]["tiles_json"], settings, parts=40)
    ledger = tmp_path / "out/volume.job"
    first.wait(timeout=60)
    recorded = len(list(ledger.rglob("tasks/*.parquet")))
    assert 40 <= recorded < 96

    second = export(job, *settings, cwd=tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    resumed = int(re.search(r"resuming: (\d+) of 96 blocks", err).group(1))
    assert resumed >= recorded
    assert re.search(rf"^blocks {96 - resumed}/{96 - resumed} \(100%\)", err, re.M), err[-1500:]
    assert files_under(tmp_path / "out/volume") == files_under(clean[1])
    assert not list(ledger.rglob("tasks/*.parquet")) and list(ledger.rglob("objects.parquet"))


def recorded_objects(ledger: Path) -> list[str]:
    """Keys the ledger's parts record as written, level 0 first."""
    import pyarrow.parquet as pq
    keys = []
    for part in sorted(ledger.rglob("tasks/*.parquet")):
        table = pq.read_table(part)
        keys += [k for k, w in zip(table["key"].to_pylist(), table["written"].to_pylist()) if w]
    return sorted(set(keys))


@pytest.mark.parametrize("mode", ["size", "checksum"])
def test_a_resume_rechecks_the_objects_it_trusts(small_acquisition, clean, tmp_path, mode):
    """Kill the driver midway; between runs delete one recorded chunk, truncate another
    and (checksum mode) flip a byte in a third; the rerun finds them (one listing; with
    resume.verify = "checksum" every object read), runs their blocks again, and the
    result equals a clean run byte for byte, pyramid included."""
    tiles = small_acquisition["paths"]["tiles_json"]
    settings = [*BLOCKS, "output.levels=2", "spark.blocks_per_task=1", f"resume.verify={mode}"]
    job, first = a_stopped_run(tmp_path, tiles, settings, parts=30)
    first.wait(timeout=60)
    ledger = tmp_path / "out/volume.job"

    keys = recorded_objects(ledger)
    assert len(keys) >= 3
    out = tmp_path / "out/volume"
    (out / keys[0]).unlink()
    truncated = (out / keys[1]).read_bytes()
    (out / keys[1]).write_bytes(truncated[:-1])
    if mode == "checksum":
        flipped = bytearray((out / keys[2]).read_bytes())
        flipped[len(flipped) // 2] ^= 0xFF
        (out / keys[2]).write_bytes(bytes(flipped))

    second = export(job, *settings, cwd=tmp_path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    damaged = 3 if mode == "checksum" else 2
    assert re.search(rf"resume: {damaged} of \d+ recorded objects are missing from the output or changed"
                     rf".*; the \d+ blocks recorded with them \(the ledger parts of their tasks", err), err[-2000:]
    assert files_under(out) == files_under(clean[2])


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_job_in_one_line_and_the_rerun_completes(small_acquisition, clean, tmp_path, sig, code):
    """Ctrl-C (SIGINT to the terminal's process group) or a scheduler's SIGTERM mid-run:
    one line saying how far it got, the job record marked interrupted, the lock released,
    exit 128 + the signal; the same command then finishes byte-identical to a clean run."""
    import json
    tiles = small_acquisition["paths"]["tiles_json"]
    settings = [*BLOCKS, "spark.blocks_per_task=1"]
    # to the whole group, as a terminal's Ctrl-C and SLURM's scancel do
    job, first = a_stopped_run(tmp_path, tiles, settings, parts=10, sig=sig)
    _, err = first.communicate(timeout=120)
    assert first.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"interrupted with at least \d+ of 96 blocks recorded; run the same command again to resume", last), err[-2000:]
    record = json.loads((tmp_path / "out/volume.job.json").read_text())
    assert record["status"] == "interrupted"
    assert not (tmp_path / "out/volume.job.lock").exists()

    second = export(job, *settings, cwd=tmp_path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    assert files_under(tmp_path / "out/volume") == files_under(clean[1])
