"""What the run report's projection says in words: channel, level, µm; no absolute path."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

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
    assert _level_words(plan, 1) == "pyramid level 1 (2 × 2 voxels a pixel)"


def test_the_seam_picture_is_in_the_report_whenever_stitching_ran(tmp_path):
    from pipelines.testing.synthetic import make_acquisition
    acq = make_acquisition(tmp_path / "acq", grid=(2, 2, 1), tile=(48, 40, 12), overlap=0.3,
                           jitter=3, seed=4, truth=False, density=25)
    for stitching in (True, False):
        out = tmp_path / f"out-{stitching}" / "volume"
        job = write_job(tmp_path / f"{stitching}.toml", acq["paths"]["tiles_json"], str(out),
                        "[stitching]\nenabled = true\nsearch = 6\ndownsample = [2, 2, 1]"
                        if stitching else "")
        report = export_local(load_job(job)).report
        picture = out.parent / "volume.report" / "stitching-before-after.png"
        assert ("stitching-before-after.png" in report.files) is stitching
        assert picture.exists() is stitching
        if stitching:   # two panels, stage and registered: jittered tiles fuse differently
            img = imread(picture)[..., :3]
            left, right = np.array_split(img, 2, axis=1)
            width = min(left.shape[1], right.shape[1])
            assert np.abs(left[:, :width] - right[:, :width]).mean() > 0.005


def test_the_run_report_says_why_the_seam_picture_of_affine_views_is_missing(tmp_path):
    """A BigStitcher grid of anisotropic views (placed by affines) registered before the
    export: no stitching-before-after.png (drawn at translations only), and summary.json
    says why instead of nothing."""
    import json

    from tests.bigstitcher_project import scenario, write_project
    xml = write_project(tmp_path / "acq", scenario("grid"), "tiff")
    out = tmp_path / "out" / "volume"
    job = write_job(tmp_path / "job.toml", str(xml), str(out),
                    "[stitching]\nenabled = true\nsearch = 4\ndownsample = [1, 1, 1]")
    report = export_local(load_job(job)).report
    assert "stitching-before-after.png" not in report.files
    summary = json.loads((out.parent / "volume.report" / "summary.json").read_text())
    assert summary["stitching-before-after"].startswith(
        "not drawn: it is drawn only for tiles placed by translations, and these views are "
        "placed by affine transforms"), summary
