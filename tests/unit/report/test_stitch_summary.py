"""What `tile-stitch` and an export with stitching print about the registration."""

from __future__ import annotations

from pipelines.registering import StitchResult
from pipelines.registration.results import StitchOutcome
from pipelines.report.console import stitch_summary

REPORT = {"pairs": {"measured": 4, "kept": 4, "dropped": 0, "unmatched": 0},
          "seconds": {"pairs": 2.0, "per_pair": 0.5},
          "residual_voxels": {"median": 0.1, "max": 0.2},
          "correction_voxels": {"median": 3.0, "max": 5.0},
          "solve": {"unlinked_tiles": []}}


def test_every_refined_tile_json_is_named():
    """Defect (a user's trial): with two channels only the first channel's tiles-final.json
    was named, though both were written and the export reads both."""
    jsons = (("/d/ch0-final.json", "/d/ch1-final.json"), ("/d/t1/ch0-final.json", "/d/t1/ch1-final.json"))
    outcome = StitchOutcome(None, REPORT, jsons, "/d/ch0-stitching.json", "/d/ch0-stitching.png")
    lines = stitch_summary(StitchResult(outcome, 0.0, 2.0)).splitlines()
    start = next(n for n, line in enumerate(lines) if "refined tiles: /d/ch0-final.json" in line)
    assert [line.strip() for line in lines[start + 1:start + 4]] == [
        "/d/ch1-final.json", "/d/t1/ch0-final.json", "/d/t1/ch1-final.json"]
    assert lines[start + 4].strip().startswith("report: /d/ch0-stitching.json")
