"""The run report beside the dataset: summary, projections read back from the objects,
layout and progress pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from pipelines.config import load_job
from pipelines.report.summary import projection_level, projections
from pipelines.storage import LocalStore
from tests.conftest import write_job
from tests.readers import tensorstore_read

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def exported(spark, small_acquisition, tmp_path_factory):
    from pipelines.driver import export
    from pipelines.spark import SparkExecutor
    folder = tmp_path_factory.mktemp("report")
    job = write_job(folder / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(folder / "out" / "volume"), "levels = 2")
    return export(load_job(job), executor=SparkExecutor(spark=spark)), folder / "out"


def test_report_sits_beside_the_dataset_with_summary_and_pictures(exported):
    result, out = exported
    folder = out / "volume.report"
    assert result.report is not None and result.report.folder == str(folder)
    assert not (out / "volume" / "volume.report").exists()   # never inside the dataset
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset"]["objects_written"] == result.summary.objects_written
    assert summary["master"].startswith("local") and summary["run_seconds"] > 0
    for name in ("projections.png", "layout.png", "progress.png"):
        image = imread(folder / name)
        assert image.ndim == 3 and image.std() > 0, name


def test_projection_is_the_maximum_over_z_of_the_stored_level(exported):
    result, out = exported
    plan = result.plan
    level = projection_level(plan)
    [(label, image, aspect, pixel_um)] = projections(plan, LocalStore(plan.output.uri))
    stored = tensorstore_read(str(out / "volume"), f"c0/s{level}", "n5")
    np.testing.assert_array_equal(image, stored.max(axis=0))
    assert f"level {level}" in label and aspect == pytest.approx(1.0)
    # µm per pixel of the projected level: level 0's x voxel size times the level's factor
    out_ = plan.output
    assert pixel_um == pytest.approx(out_.base.resolution[0] * out_.cumulative(level)[0])


def test_ledger_parts_carry_their_finish_times_and_blocks(small_acquisition, tmp_path):
    """progress.png is drawn from these times; a resumed run reads them from the ledger."""
    import time

    from pipelines.commit import ledger
    from pipelines.execute.block import run_partition
    from pipelines.plan import make_plan
    from pipelines.storage import MemoryStore
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out" / "volume"))
    plan = make_plan(load_job(job, ["spark.blocks_per_task=4", "limits.checkpoint_seconds=0"]))
    part, beside = plan.tasks_of(0).partition(0, 0), MemoryStore("report-ledger")
    before = time.time()
    summary = run_partition(part, plan, LocalStore(plan.output.uri), beside, "base")
    assert summary.blocks == part.blocks == 4 and before <= summary.finished <= time.time()
    recorded = ledger.read_parts(beside, "base")
    assert [n for _, n in recorded.finished] == [1, 1, 1, 1]   # a part per block
    assert all(before <= t <= summary.finished for t, _ in recorded.finished)
    assert len(recorded.objects) == summary.written + summary.skipped


def test_a_level_too_large_to_read_back_gives_no_projection(exported, monkeypatch):
    """Only a pyramid level within PROJECTION_BYTES and PROJECTION_OBJECTS is read back on
    the driver."""
    from pipelines.report import summary as report
    result, out = exported
    store = LocalStore(result.plan.output.uri)
    assert report.projections(result.plan, store) is not None
    monkeypatch.setattr(report, "PROJECTION_BYTES", 1000)
    assert report.projections(result.plan, store) is None
    monkeypatch.undo()
    monkeypatch.setattr(report, "PROJECTION_OBJECTS", 3)
    assert report.projections(result.plan, store) is None
