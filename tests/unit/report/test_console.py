"""What the console says after stitching, when no pair could be trusted."""

from __future__ import annotations

from pipelines.driver import StitchResult
from pipelines.registration.results import StitchOutcome
from pipelines.report.console import stitch_summary


def test_a_stitching_that_kept_no_pair_says_n_a_not_none():
    """With no pair kept the report's residuals and corrections are JSON null; the console
    line says "n/a" for them, not Python's None."""
    none = {"median": None, "max": None}
    report = {"pairs": {"measured": 1, "kept": 0, "dropped": 1, "unmatched": 0},
              "seconds": {"pairs": 0.4, "per_pair": 0.4}, "solve": {"unlinked_tiles": [0, 1]},
              "residual_voxels": none, "correction_voxels": none}
    outcome = StitchOutcome(None, report, (("tiles-final.json",),), "tiles-stitching.json",
                            "tiles-stitching.png")
    text = stitch_summary(StitchResult(outcome, 0.0, 1.0))
    assert "None" not in text, text
    assert "residual median n/a / max n/a voxels; corrections median n/a / max n/a" in text, text
    assert "1 pairs measured" in text and "0 kept" in text
