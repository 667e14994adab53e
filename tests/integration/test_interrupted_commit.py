"""A driver killed during the commit: a real export process (Spark local mode) SIGKILLs its
whole process group right after a chosen metadata put, or right after the job record says
committed; then the same command, tile-verify and tile-clean take over."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli.clean import main as clean_main
from pipelines.cli.verify import main as verify_main
from tests.conftest import ROOT, write_job
from tests.integration.test_resume import export, files_under

pytestmark = pytest.mark.slow

# Runs the export CLI with LocalStore.put wrapped: after the put named by argv[1] the
# driver kills its process group (itself and its JVM), as a pre-empted node would.
#   "metadata:N"  after the N-th metadata document written inside the container
#   "committed"   after the job record is written with status "committed"
KILLING_EXPORT = """
import os, signal, sys
from pipelines.commit.ownership import METADATA_NAMES
from pipelines.storage.local import LocalStore

when, argv = sys.argv[1], sys.argv[2:]
put, metadata_puts = LocalStore.put, []

def put_then_maybe_die(self, key, data):
    put(self, key, data)
    if key.rsplit("/", 1)[-1] in METADATA_NAMES and self.root.name == "volume":
        metadata_puts.append(key)
        if when == f"metadata:{len(metadata_puts)}":
            os.killpg(0, signal.SIGKILL)
    if when == "committed" and key.endswith(".job.json") and b'"committed"' in data:
        os.killpg(0, signal.SIGKILL)

LocalStore.put = put_then_maybe_die
from pipelines.cli.export import main
sys.exit(main(argv))
"""

SETTINGS = ["output.levels=2", "spark.master=local[1]"]   # 4 documents: c0/s0, c0/s1, c0, root


@pytest.fixture(scope="module")
def clean_volume(small_acquisition, tmp_path_factory) -> Path:
    """An uninterrupted export of the job the tests kill."""
    where = tmp_path_factory.mktemp("clean")
    job = write_job(where / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume")
    run = export(job, *SETTINGS, cwd=where)
    assert run.wait(timeout=300) == 0, run.stderr.read()[-2000:]
    return where / "out/volume"


def killed_export(tmp_path: Path, tiles: str, when: str) -> Path:
    """Run the job into tmp_path/out/volume and let it kill itself at `when`; the job file."""
    job = write_job(tmp_path / "job.toml", tiles, "out/volume")
    script = tmp_path / "killing_export.py"
    script.write_text(KILLING_EXPORT)
    args = [sys.executable, str(script), when, str(job)]
    for item in SETTINGS:
        args += ["--set", item]
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         start_new_session=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == -9, f"the run was not killed at {when}: {run.stderr[-2000:]}"
    return job


@pytest.mark.parametrize("when", ["metadata:1", "metadata:3", "metadata:4"])
def test_a_commit_killed_between_metadata_writes_is_finished_by_a_rerun(
        small_acquisition, clean_volume, tmp_path, capsys, when):
    """Killed after the first array's metadata, after the last array's and a group's (before
    the root), and after the root (before the job record): verify calls the dataset an
    unfinished commit (exit 1); the same command finishes it without computing a block,
    and the dataset equals a clean run's byte for byte."""
    job = killed_export(tmp_path, small_acquisition["paths"]["tiles_json"], when)
    out = tmp_path / "out/volume"
    assert (out / "c0/s0/attributes.json").exists()   # a reader could open level 0 already
    assert verify_main([str(out)]) == 1
    assert "the commit of this dataset did not finish" in capsys.readouterr().out

    rerun = export(job, *SETTINGS, cwd=tmp_path)
    out_text, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    blocks = re.search(r"resuming: (\d+) of (\d+) blocks are already recorded", err)
    assert blocks and blocks.group(1) == blocks.group(2), err[-2000:]
    assert not re.search(r"^blocks \d+/\d+", err, re.M), err[-2000:]   # nothing computed again
    # nothing to run, so no Spark session either (trial AA: 5-13 s of start-up for 0 blocks)
    assert "(+ 0.0 s Spark start-up)" in out_text and "spark:    not started" in out_text, out_text
    summary = json.loads((tmp_path / "out/volume.report/summary.json").read_text())
    assert summary["master"] is None and summary["resumed_blocks"] == int(blocks.group(1)), summary
    assert files_under(out) == files_under(clean_volume)
    assert verify_main([str(out)]) == 0, capsys.readouterr().out


def test_a_kill_after_the_commit_before_compaction_keeps_the_receipts(small_acquisition, tmp_path, capsys):
    """Killed after the job record says committed, before the ledger's parts were compacted:
    verify reads the parts (exit 0), and clean never deletes them, the only record of the
    objects: --remove compacts them into objects.parquet, and verify still passes."""
    killed_export(tmp_path, small_acquisition["paths"]["tiles_json"], "committed")
    out, ledger = tmp_path / "out/volume", tmp_path / "out/volume.job"
    parts = list(ledger.rglob("tasks/*.parquet"))
    assert parts and not list(ledger.rglob("objects.parquet"))
    assert verify_main([str(out)]) == 0, capsys.readouterr().out
    assert "0 problems" in capsys.readouterr().out

    assert clean_main([str(out)]) == 0
    listing = capsys.readouterr().out
    assert not any(part.name in listing for part in parts), listing
    assert "not compacted" in listing
    assert clean_main([str(out), "--remove"]) == 0
    assert "compacted" in capsys.readouterr().out
    assert not list(ledger.rglob("tasks/*.parquet")) and list(ledger.rglob("objects.parquet"))
    assert verify_main([str(out)]) == 0, capsys.readouterr().out
