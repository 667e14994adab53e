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


def test_progress_says_eta_n_a_before_any_block_is_done():
    import io

    from pipelines.report.progress import Progress
    stream = io.StringIO()
    progress = Progress(4, stream, log_interval=0.0)
    progress(0, 0)      # e.g. the first task failed before any block was done
    progress(2, 2**20)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("blocks 0/4 (0%)") and lines[0].endswith("ETA n/a")
    assert lines[1].startswith("blocks 2/4 (50%)") and lines[1].split("ETA ")[1].endswith(" s")
