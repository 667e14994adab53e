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


def test_kept_pairs_without_a_loop_are_said_to_check_nothing():
    """Trial X: 5 kept pairs over 6 tiles (a tree) gave residuals of 0.0 and a confident
    summary while tiles sat 27 voxels off: without a loop the residuals cannot show a
    false match. A grid with loops says nothing of it."""
    def summary(kept, tiles, groups=1, unlinked=()):
        report = {**REPORT, "pairs": {**REPORT["pairs"], "kept": kept}, "tiles": tiles,
                  "solve": {"groups": groups, "unlinked_tiles": list(unlinked)}}
        outcome = StitchOutcome(None, report, (("/d/final.json",),), "/d/r.json", "/d/p.png")
        return stitch_summary(StitchResult(outcome, 0.0, 2.0))

    assert "no loop among the 5 kept pairs" in summary(kept=5, tiles=6)
    assert "no loop" not in summary(kept=7, tiles=6)                 # a 3 x 2 grid's loops
    assert "no loop among the 5 kept pairs" in summary(kept=5, tiles=7, unlinked=[6])
    assert "no loop among the 2 kept pairs" in summary(kept=2, tiles=4, groups=2)
    assert "no loop" not in summary(kept=0, tiles=4, unlinked=[0, 1, 2, 3], groups=0)
    assert "no loop" not in stitch_summary(StitchResult(            # an older report
        StitchOutcome(None, REPORT, (("/d/final.json",),), "/d/r.json", "/d/p.png"), 0.0, 2.0))
