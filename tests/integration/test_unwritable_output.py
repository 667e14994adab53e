"""An output that becomes unwritable while the tasks run (issue 16.2): the job ends with
exit 1 and one line naming the folder, never Spark's wrapper ("Spark job failed: An error
occurred while calling ...collectAndServe", "An exception was thrown from the Python
worker"), and nothing is committed.

The faults are made as root can feel them (CI runs as root, where chmod a-w stops no
write): a read-only bind mount of a folder over itself, or a file put where a folder was.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_job

pytestmark = pytest.mark.slow


def read_only(folder: Path) -> None:
    """Make `folder` read-only for everyone, root included: a read-only bind mount of it."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)


def refusal_on_read_only(folder: Path, command: list[str], cwd: Path) -> str:
    """Run `command` with `folder` made read-only (then writable again); its one line on
    stderr, after checking it ended with exit 2 and nothing else on stderr."""
    read_only(folder)
    try:
        run = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
    return lines[0]


def ledger_tasks(out: Path) -> Path:
    """The folder the running tasks record their finished blocks in."""
    return next((out.parent / f"{out.name}.job").glob("*/tasks"))


def replace_with_file(folder: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.write_bytes(b"not a folder")


# fault name → (what breaks, the folder the line must name, how its error reads)
FAULTS = {
    "ledger read-only": (lambda out: read_only(ledger_tasks(out)), ledger_tasks,
                         "Read-only file system"),
    "level folder replaced by a file": (lambda out: replace_with_file(out / "c0/s0"),
                                        lambda out: out / "c0/s0", "is a file, not a folder"),
    "output read-only": (lambda out: read_only(out), lambda out: out, "Read-only file system"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_output_that_becomes_unwritable_mid_run_is_one_line_naming_it(small_acquisition,
                                                                         tmp_path, fault):
    breaks, named, reason = FAULTS[fault]
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(out))
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set", "debug.task_delay=0.3",
            "--set", "spark.master=local[1]", "--set", "limits.checkpoint_seconds=0"]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path)
    mounted: list[Path] = []
    try:
        deadline = time.time() + 180
        while len(list(tmp_path.glob("out.job/*/tasks/*.parquet"))) < 2:
            assert run.poll() is None and time.time() < deadline, "no task finished in time"
            time.sleep(0.1)
        folder = named(out)
        breaks(out)
        mounted = [folder] if "read-only" in fault else []
        _, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        for each in mounted:
            subprocess.run(["umount", "-l", str(each)], check=False)
    lines = [line for line in err.splitlines() if line.startswith(("failed:", "error:"))]
    assert run.returncode == 1, err[-3000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    line = lines[0]
    assert f"{folder}" in line and reason in line, line
    assert "Spark job failed" not in line and "Python worker" not in line, line
    assert "no metadata was written" in line, line
    assert not (out / "attributes.json").exists()


@pytest.mark.parametrize("output", ["out", "existing/out"])
def test_a_read_only_output_file_system_is_one_line_before_anything_runs(small_acquisition,
                                                                         tmp_path, output):
    """Refused before the lock, the job record or Spark (issue 16.2: it was a traceback of
    `OSError: [Errno 30] Read-only file system: '…/volume.job.lock'`), exit 2."""
    disk = tmp_path / "disk"
    (disk / "existing").mkdir(parents=True)
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(disk / output))
    line = refusal_on_read_only(disk, [sys.executable, str(ROOT / "jobs/export.py"), str(job)], tmp_path)
    assert line.startswith("error: output.uri:") and "read-only file system" in line
    deepest = disk / "existing" if "/" in output else disk   # the folder that exists
    assert f"under {deepest} " in line, line
    assert sorted(p.name for p in disk.rglob("*")) == ["existing"]   # nothing written


def test_stitching_an_acquisition_on_read_only_storage_is_refused_before_measuring(small_acquisition,
                                                                                  tmp_path):
    """Registration writes tiles-final.json and its report beside the tile JSON: on
    read-only storage it is refused in one line before Spark starts or any pair is
    measured (it was a traceback after every pair had been measured)."""
    import shutil
    acquisition = tmp_path / "acq"
    source = Path(small_acquisition["paths"]["tiles_json"])
    shutil.copytree(source.parent, acquisition)
    job = write_job(tmp_path / "job.toml", str(acquisition / source.name), str(tmp_path / "out"))
    line = refusal_on_read_only(acquisition, [sys.executable, str(ROOT / "jobs/stitch.py"), str(job)],
                                tmp_path)
    assert line.startswith("error: stitching's result (tiles-final.json, its report) goes beside "
                           f"the input: cannot write under {acquisition} (a read-only file system)"), line


@pytest.mark.parametrize("job_flag", ["flatfield.enabled=true", "fusion.intensity=match"])
def test_illumination_on_read_only_storage_is_refused_before_measuring(tmp_path, job_flag):
    """Flatfield estimation and intensity matching also write beside the tile JSON (nine
    tiles: a flatfield needs six at least)."""
    from pipelines.testing.synthetic import make_acquisition
    acquisition = tmp_path / "acq"
    made = make_acquisition(acquisition, grid=(3, 3, 1), tile=(32, 32, 4), jitter=0, seed=3)
    job = write_job(tmp_path / "job.toml", made["paths"]["tiles_json"], str(tmp_path / "out"))
    line = refusal_on_read_only(acquisition, [sys.executable, str(ROOT / "jobs/export.py"), str(job),
                                              "--set", job_flag], tmp_path)
    assert f"goes beside the input: cannot write under {acquisition} (a read-only file system)" in line
    assert not (tmp_path / "out").exists()
