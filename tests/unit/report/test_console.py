"""What the console says after stitching, when no pair could be trusted."""

from __future__ import annotations

from pipelines.registering import StitchResult
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
    assert "1 pair tried" in text and "1 measured, 0 kept" in text
    assert "tiles without a trustworthy link (stage position kept): [0, 1]" in text
    # a project's views are named with their setups (trial K: tile numbers alone)
    report["tile_results"] = [{"index": 0, "view": "view setup 6, timepoint 0"}, {"index": 1}]
    text = stitch_summary(StitchResult(outcome, 0.0, 1.0))
    assert "(stage position kept): [0 (view setup 6, timepoint 0), 1]" in text, text


def summary(pairs: dict, groups: int = 1) -> str:
    report = {"pairs": pairs, "seconds": {"pairs": 7.6, "per_pair": 0.069},
              "solve": {"unlinked_tiles": [], "groups": groups},
              "residual_voxels": {"median": 0.1, "max": 0.5},
              "correction_voxels": {"median": 3.0, "max": 6.0}}
    outcome = StitchOutcome(None, report, (("tiles-final.json",),), "tiles-stitching.json",
                            "tiles-stitching.png")
    return stitch_summary(StitchResult(outcome, 0.0, 1.0))


def test_the_time_per_pair_names_the_pairs_it_divides_by():
    """The time per pair is over every pair tried (one task each): the measured ones and
    those without a match; the line says so (it said "78 pairs measured … per pair" for
    110 tasks)."""
    text = summary({"measured": 78, "kept": 77, "below_min_score": 0, "dropped": 1,
                    "unmatched": 32})
    assert text.splitlines()[0] == ("stitching: 110 pairs tried in 7.6 s (0.07 s per pair): 78 "
                                    "measured, 77 kept, 0 below min_score, 1 dropped as "
                                    "inconsistent, 32 without a match"), text
    assert "not tried" not in text


def test_pairs_between_angles_are_said_to_be_skipped():
    """A project's views of two angles: the console says the pairs between them were not
    tried and that each angle is registered on its own."""
    text = summary({"measured": 40, "kept": 40, "below_min_score": 0, "dropped": 0,
                    "unmatched": 0, "skipped_linear_parts_differ": 7}, groups=2)
    assert ("           7 pairs of views with different linear parts (angles) not tried: each "
            "linear part is registered separately (2 linked groups, each with its own common "
            "shift)") in text.splitlines(), text


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


def test_the_eta_goes_by_the_pace_after_the_first_blocks(monkeypatch):
    """Trial Q: the first ETAs were 422-881 s for runs of 25-55 s, the start-up (workers
    starting, numba compiling) counted as if every block paid it. 100 blocks: 10 done
    after 30 s of start-up, then 10 more every 2 s."""
    import io

    from pipelines.report import progress as module
    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    progress = module.Progress(100, stream, log_interval=0.0)
    for at, done in ((30.0, 2), (30.25, 10), (32.0, 20), (46.0, 80)):
        clock[0] = at
        progress(done, 0)
    etas = [float(line.split("ETA ")[1].removesuffix(" s")) for line in stream.getvalue().splitlines()]
    # from the start until the pace is measured over 15 s (half the start-up; the rest of
    # the first wave a poll later is not the pace: review J); then 78 blocks in 16 s
    assert etas == [1470.0, 272.0, 128.0, 4.0]


def test_rates_and_ratios_count_what_the_blocks_computed_not_empty_space(tmp_path):
    """Defect (trial H): two tiles far apart printed "compression ratio 75595214.57" and
    millions of MiB/s, counting the empty span between them. Two block-sized tiles 100
    blocks apart, 2 levels (level 1 halves x and y: 1 616 × 12 × 8, blocks of 32 × 12 × 8
    read back from level 0): by hand, level 0's two blocks 2 · 32·24·8, level 1's block
    at x 0-32 and its last block, x 1 600-1 616, 32·12·8 + 16·12·8 — not the arrays'
    3 232 × 24 × 8 + 1 616 × 12 × 8."""
    import json

    from pipelines.config import load_job
    from pipelines.report.console import export_report
    from pipelines.testing.synthetic import make_acquisition
    from tests.conftest import write_job
    from tests.pipeline_helpers import export_local

    acq = make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(32, 24, 8), overlap=0.0,
                           jitter=0, seed=2, truth=False)
    tiles_json = tmp_path / "acq/tiles.json"
    doc = json.loads(tiles_json.read_text())
    doc[1]["position"] = [3200, 0, 0]
    tiles_json.write_text(json.dumps(doc))
    job = write_job(tmp_path / "job.toml", str(tiles_json), str(tmp_path / "out"))
    config = load_job(job, ["output.chunks=[32, 24, 8]", "output.block=[1, 1, 1]", "output.levels=2"])
    result = export_local(config)
    assert acq and result.plan.output.shapes == ((3232, 24, 8), (1616, 12, 8))
    assert result.plan.computed_voxels() == 2 * 32 * 24 * 8 + 32 * 12 * 8 + 16 * 12 * 8
    assert result.volume_bytes == 2 * (3232 * 24 * 8 + 1616 * 12 * 8)   # uint16
    report = export_report(result)
    ratio = result.computed_bytes / result.summary.bytes_written
    assert f"(compression ratio {ratio:.2f})" in report and ratio < 10, report
    assert "; the arrays span 1.48 MiB, the rest left empty as no tile reaches it" in report, report
    # trial AE: np.prod of a shape past 2^63 voxels wrapped, and the span was left out
    from dataclasses import replace
    shapes = ((851095015, 1129441209, 30), (425547508, 564720605, 30))   # two levels, as planned
    huge = replace(result, plan=replace(result.plan, output=replace(result.plan.output, shapes=shapes)))
    assert huge.volume_bytes == 2 * 30 * (851095015 * 1129441209 + 425547508 * 564720605) > 2**64
    assert f"; the arrays span {huge.volume_bytes / 2**50:.2f} PiB" in export_report(huge)
    from pipelines.plan.dryrun import dry_run
    paper = dry_run(config)   # the dry run counts the same
    assert (paper.computed_bytes, paper.uncompressed_bytes) == (result.computed_bytes, result.volume_bytes)
    assert any("computed by the blocks (the arrays span" in line for line in paper.lines()), paper.lines()


def test_an_output_the_tiles_fill_reports_as_before(tmp_path, small_acquisition):
    from pipelines.config import load_job
    from pipelines.report.console import export_report
    from tests.conftest import write_job
    from tests.pipeline_helpers import export_local

    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    result = export_local(load_job(job, ["output.levels=2"]))
    assert result.computed_bytes == result.volume_bytes
    assert "left empty" not in export_report(result)


def test_a_slow_rate_is_not_printed_as_zero():
    """Trial AV: 1.9 MiB in 42 s read "0.0 MiB/s" in the progress and time lines."""
    from pipelines.report.progress import rate_text
    assert rate_text(1.9 / 42) == "0.045 MiB/s"
    assert rate_text(0.5) == "0.50 MiB/s" and rate_text(99.53) == "99.5 MiB/s"
    assert rate_text(0.0) == "0.0 MiB/s" and rate_text(0.996) == "1.0 MiB/s"   # RV11
    assert rate_text(0.949) == "0.95 MiB/s" and rate_text(1e-8) == "< 0.001 MiB/s"
