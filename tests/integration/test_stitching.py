"""The stitch job and an export with stitching, on Spark: refined tiles to within the
accuracy goal, and fusion at the refined positions equal to fusion at the true ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_job
from pipelines.tiles import read_tile_json
from tests.conftest import ROOT, write_job
from tests.readers import tensorstore_read
from tests.unit.registration.test_registration import (  # noqa: F401  (small_jittered: a fixture)
    MAX_GOAL,
    STITCH,
    errors_against_truth,
    small_jittered,
)


def run_job(script: str, job: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "jobs" / script), str(job), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.spark
@pytest.mark.slow
def test_stitch_job_writes_refined_tiles_report_and_picture(small_jittered, tmp_path):  # noqa: F811
    paths = small_jittered["paths"]
    job = write_job(tmp_path / "job.toml", paths["tiles_json"], str(tmp_path / "out"), STITCH)
    run = run_job("stitch.py", job)
    assert run.returncode == 0, run.stderr
    final = Path(paths["tiles_json"]).with_name("tiles-final.json")
    assert f"refined tiles: {final}" in run.stdout
    found = {t.index: t.position for t in read_tile_json(final)}
    errors = errors_against_truth(found, read_tile_json(paths["tiles_true_json"]))
    assert errors.max() <= MAX_GOAL
    report = json.loads(final.with_name("tiles-stitching.json").read_text())
    assert report["pairs"]["measured"] == len(report["pair_results"]) >= 4
    assert {r["index"] for r in report["tile_results"]} == set(found)
    assert final.with_name("tiles-stitching.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.spark
def test_export_with_stitching_equals_export_at_the_true_positions(spark, small_jittered, tmp_path):  # noqa: F811
    """Registration to within half a voxel, placed on whole voxels: nearest-voxel fusion
    puts every tile exactly where the true positions put it."""
    from pipelines.driver import export
    from pipelines.spark import SparkExecutor
    paths = small_jittered["paths"]
    stitched_job = write_job(tmp_path / "a.toml", paths["tiles_json"], str(tmp_path / "a" / "v"), STITCH)
    true_job = write_job(tmp_path / "b.toml", paths["tiles_true_json"], str(tmp_path / "b" / "v"))
    # force: the stitch job's test may have registered this acquisition already, and this
    # test is of registration on Spark within an export, not of reusing its results
    result = export(load_job(stitched_job, ["stitching.force=true"]), executor=SparkExecutor(spark=spark))
    assert not result.stitching.outcome.reused
    assert result.stitching is not None and result.stitching.outcome.report["pairs"]["kept"] >= 4
    export(load_job(true_job), executor=SparkExecutor(spark=spark))
    stitched = tensorstore_read(str(tmp_path / "a" / "v"), "c0/s0", "n5")
    reference = tensorstore_read(str(tmp_path / "b" / "v"), "c0/s0", "n5")
    assert stitched.shape == reference.shape
    np.testing.assert_array_equal(stitched, reference)
