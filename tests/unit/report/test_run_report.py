"""What the run report's projection says in words: channel, level, µm; no absolute path."""

from __future__ import annotations

from pipelines.config import load_job
from pipelines.report.summary import _level_words, projections, projections_title
from pipelines.storage import open_store
from tests.conftest import write_job
from tests.pipeline_helpers import export_local


def test_projection_labels_say_channel_level_and_pixel_size(small_acquisition, tmp_path):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out" / "volume"), "levels = 2")
    plan = export_local(load_job(job)).plan
    (label, image, aspect, um), = projections(plan, open_store(plan.output.uri))
    assert label == "channel tiles, full resolution (pyramid level 0)"   # 115 voxels ≤ 1024
    assert um == plan.output.base.resolution[0] and aspect == plan.output.base.resolution[1] / um
    assert projections_title(plan) == "volume: brightest voxel along z"
    assert str(tmp_path) not in projections_title(plan)
    assert _level_words(plan, 1) == "pyramid level 1 (each pixel 2 × 2 voxels of full resolution)"
