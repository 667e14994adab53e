"""An export with [stitching] enabled reuses the last registration while the stage JSON,
the tiles and the [stitching] settings are unchanged, and registers again otherwise; the
run report's timings are those the console prints (the real driver on a LocalExecutor)."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_job
from pipelines.driver import ExportResult, export
from pipelines.execute.executor import LocalExecutor
from pipelines.report.console import export_report
from pipelines.testing.synthetic import make_acquisition
from tests.conftest import write_job

STITCH = """
[stitching]
enabled = true
search = 6
downsample = [2, 2, 1]
"""


@pytest.fixture
def acq(tmp_path) -> Path:
    make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(48, 40, 12), overlap=0.3,
                     jitter=3, seed=4, truth=False, density=25)
    return tmp_path / "acq"


def run(tmp_path: Path, acq: Path, name: str, *overrides: str,
        executor: LocalExecutor | None = None) -> tuple[ExportResult, str]:
    """Export into its own output `name`; the result and what the driver printed."""
    job = write_job(tmp_path / f"{name}.toml", str(acq / "tiles.json"),
                    str(tmp_path / name / "volume"), extra=STITCH)
    stream = io.StringIO()
    result = export(load_job(job, overrides), executor or LocalExecutor(), stream=stream)
    return result, stream.getvalue()


def change_setting(acq: Path) -> list[str]:
    return ["stitching.min_score=0.4"]


def change_stage_json(acq: Path) -> list[str]:
    doc = json.loads((acq / "tiles.json").read_text())
    doc[1]["position"][0] += 1.0
    (acq / "tiles.json").write_text(json.dumps(doc))
    return []


def touch_a_tile(acq: Path) -> list[str]:
    tile = acq / "tiles" / "tile-0001.tif"
    os.utime(tile, ns=(time.time_ns(), tile.stat().st_mtime_ns + 10**9))
    return []


def edit_the_result(acq: Path) -> list[str]:
    final = acq / "tiles-final.json"
    final.write_text(final.read_text().replace("\n", "\n ", 1))
    return []


def force(acq: Path) -> list[str]:
    return ["stitching.force=true"]


def report_of_an_earlier_version(acq: Path) -> list[str]:
    """The report as versions before the fingerprint's parts were recorded wrote it, of a
    fingerprint made otherwise."""
    report = acq / "tiles-stitching.json"
    doc = json.loads(report.read_text())
    doc["reuse"].pop("parts")
    doc["reuse"]["fingerprint"] = "0" * 32
    report.write_text(json.dumps(doc))
    return []


def report_of_another_method(acq: Path) -> list[str]:
    """The report as the version before the registration's method was recorded wrote it
    (trial AK): its parts and fingerprint without "method", the package version the same."""
    from pipelines.registration import reuse
    report = acq / "tiles-stitching.json"
    doc = json.loads(report.read_text())
    doc["reuse"]["parts"].pop("method")
    doc["reuse"]["fingerprint"] = reuse.fingerprint(doc["reuse"]["parts"])
    report.write_text(json.dumps(doc))
    return []


def test_an_unchanged_acquisition_reuses_the_registration(tmp_path, acq):
    first, printed = run(tmp_path, acq, "first")
    assert " tried in " in printed and not first.stitching.outcome.reused
    final = acq / "tiles-final.json"
    written = (final.read_bytes(), final.stat().st_mtime_ns, (acq / "tiles-stitching.json").read_bytes())
    again, printed = run(tmp_path, acq, "again", "output.format=zarr3")
    lines = [line for line in printed.splitlines() if line.startswith("stitching:")]
    assert len(lines) == 1 and "reused" in lines[0] and "stitching.force=true" in lines[0], printed
    assert " tried in " not in printed and again.stitching.outcome.reused
    time_line = next(line for line in export_report(again).splitlines() if line.startswith("time:"))
    assert "(stitching reused)" in time_line and "s stitching" not in time_line, time_line
    assert (final.read_bytes(), final.stat().st_mtime_ns,
            (acq / "tiles-stitching.json").read_bytes()) == written, "the results were rewritten"
    assert again.plan.tiles[0][0].source == str(final)   # fused at the refined positions
    summary = json.loads((tmp_path / "again" / "volume.report" / "summary.json").read_text())
    assert summary["stitching"]["reused"] is True


def test_an_edited_result_is_not_replaced_unless_forced(tmp_path, acq):
    """Defect (a user's trial): a refined file edited by hand (or refined and saved in
    BigStitcher, or stitching-spark's own) was registered again and overwritten without a
    word. Now the run stops before any pair is measured; force replaces it."""
    from pipelines.errors import OutputError
    run(tmp_path, acq, "first")
    edit_the_result(acq)
    edited = (acq / "tiles-final.json").read_bytes()
    with pytest.raises(OutputError, match=r"tiles-final.json is not as this tool's "
                                          r"registrations wrote it .*stitching.force=true"):
        run(tmp_path, acq, "again", "stitching.min_score=0.4")   # a change: it must register
    assert (acq / "tiles-final.json").read_bytes() == edited
    assert not (tmp_path / "again").exists()
    (acq / "tiles-stitching.json").unlink()   # stitching-spark's file, no report of ours
    with pytest.raises(OutputError, match="tiles-final.json is not as"):
        run(tmp_path, acq, "again")
    result, printed = run(tmp_path, acq, "forced", "stitching.force=true")
    assert " tried in " in printed and (acq / "tiles-final.json").read_bytes() != edited


@pytest.mark.parametrize("change", [change_setting, change_stage_json, touch_a_tile, force,
                                    report_of_an_earlier_version, report_of_another_method])
def test_a_change_registers_again(tmp_path, acq, change):
    run(tmp_path, acq, "first")
    overrides = change(acq)
    result, printed = run(tmp_path, acq, "again", *overrides)
    assert " tried in " in printed and not result.stitching.outcome.reused, printed
    why = {change_setting: "other [stitching] settings or input.views",
           change_stage_json: f"changed tile JSONs ({acq / 'tiles.json'})",
           touch_a_tile: "the registered tiles' files changed (size or modification time)",
           force: "stitching.force",   # trial T: an earlier version's report, registered again silently
           report_of_an_earlier_version: "its report is an earlier version's, which does not "
                                         "record what the registration was made of",
           report_of_another_method: "another version of this tool"}[change]
    assert f"stitching: registering again: {why}\n" in printed, printed   # trial I: no word why
    result, printed = run(tmp_path, acq, "third", *overrides)   # and that result is reused
    assert result.stitching.outcome.reused == (change is not force), printed


def test_a_stitched_export_asks_for_the_tile_files_identities_once(tmp_path, acq, monkeypatch):
    """The check before stitching takes them (as it opens each file); the export after it
    fingerprints the same files with those: a second round would be a HEAD per S3 tile."""
    import pipelines.plan as planning
    asked: list = []
    monkeypatch.setattr(planning, "file_identities", lambda paths, s3: asked.append(paths) or {})
    result, _ = run(tmp_path, acq, "first")
    assert not asked and len(result.plan.tile_files) == 32


class SlowStart(LocalExecutor):
    """A LocalExecutor whose first start takes a while, as Spark's does."""

    def __init__(self, seconds: float):
        self.seconds, self.started = seconds, False

    def start(self) -> float:
        if self.started:
            return 0.0
        self.started = True
        time.sleep(self.seconds)
        self.startup_seconds = self.seconds   # as SparkExecutor remembers it
        return self.seconds


def test_the_run_report_times_what_the_console_prints(tmp_path, acq):
    """Start-up is counted once, where it happened (in stitching), and run_seconds is the
    export alone, as the console's time: line says."""
    began = time.perf_counter()
    result, _ = run(tmp_path, acq, "timed", executor=SlowStart(0.5))
    wall = time.perf_counter() - began
    summary = json.loads((tmp_path / "timed" / "volume.report" / "summary.json").read_text())
    assert summary["startup_seconds"] == 0.5
    assert summary["stitching_seconds"] == round(result.stitching.run_seconds, 2)
    assert summary["run_seconds"] + summary["stitching_seconds"] + 0.5 <= wall + 0.02
    time_line = next(line for line in export_report(result).splitlines() if line.startswith("time:"))
    printed = float(time_line.split()[1])
    assert abs(printed - summary["run_seconds"]) <= 0.051, (time_line, summary)
    # the console rounds the stitching time itself, not the summary's 2-decimal value (which
    # rounded again could differ: 0.2504 s prints 0.3, its 0.25 would print 0.2)
    assert f"(+ {result.stitching.run_seconds:.1f} s stitching) (+ 0.5 s Spark start-up)" in time_line


def test_a_stitching_job_needs_no_output(tmp_path, acq):
    """Defect (audit): tile-stitch and tile-flatfield refused a job without output.uri,
    which neither writes; an export still needs it."""
    from pipelines.errors import ConfigError
    from pipelines.registering import stitch
    path = tmp_path / "stitch.toml"
    path.write_text(f'[input]\ntiles = "{acq / "tiles.json"}"\n{STITCH}')
    config = load_job(path, writes_output=False)
    assert config.output.uri == ""
    outcome = stitch(config, LocalExecutor(), stream=io.StringIO()).outcome
    assert (acq / "tiles-final.json").is_file() and outcome.report["pairs"]["kept"] > 0
    with pytest.raises(ConfigError, match="missing required key output.uri"):
        load_job(path)
    path.write_text(path.read_text() + '[output]\nuri = ""\n')   # written, but empty: refused
    with pytest.raises(ConfigError, match="output.uri"):
        load_job(path)


def test_tiles_placed_by_a_transform_are_moved_by_their_registration(tmp_path):
    """Defect (a user's trial): in a tile JSON, tiles placed by a sheared `transform` were
    registered, but tiles-final.json kept the stage transform beside the refined position,
    and the transform wins: the stitched export was the stage export. Registered in their
    pixel space (as a project's views), the correction now moves the transform."""
    from pipelines.registering import stitch
    from pipelines.tiles import read_tile_json
    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(2, 2, 1), tile=(64, 56, 12), overlap=0.3, jitter=3, seed=4,
                     truth=False, density=25)
    doc = json.loads((acq / "tiles.json").read_text())
    shear = 0.05   # x moves by 0.05 voxel per z slice, the same for every tile
    for entry in doc:
        x, y, z = entry.pop("position")
        entry["transform"] = [[1, 0, shear, x], [0, 1, 0, y], [0, 0, 1, z]]
    (acq / "tiles.json").write_text(json.dumps(doc))
    path = tmp_path / "stitch.toml"
    path.write_text(f'[input]\ntiles = "{acq / "tiles.json"}"\n{STITCH}')
    stitch(load_job(path, writes_output=False), LocalExecutor(), stream=io.StringIO())
    final, true = read_tile_json(acq / "tiles-final.json"), read_tile_json(acq / "tiles-true.json")
    offsets = np.array([[t.transform[3], t.transform[7], t.transform[11]] for t in final])
    assert all(t.transform[:3] == (1.0, 0.0, shear) for t in final)   # the linear part kept
    assert all(t.position == tuple(o) for t, o in zip(final, offsets))
    error = offsets - np.array([t.position for t in true])
    error -= error.mean(axis=0)   # one common shift no registration can recover
    stage = np.array([[e["transform"][0][3], e["transform"][1][3], e["transform"][2][3]] for e in doc])
    assert np.abs(stage - offsets).max() > 1   # moved
    assert np.linalg.norm(error, axis=1).max() <= 0.5, error


def test_a_reused_registration_does_not_look_for_pairs(tmp_path, acq, monkeypatch):
    """Finding the pairs takes seconds at 10 000 tiles; reusing needs none of them."""
    import pipelines.registration.results as results
    run(tmp_path, acq, "first")

    def no_search(*args):
        raise AssertionError("pairs searched for a reused registration")
    monkeypatch.setattr(results, "find_pairs", no_search)
    again, _ = run(tmp_path, acq, "again", "output.format=zarr3")
    assert again.stitching.outcome.reused


@pytest.fixture
def time_lapse(tmp_path) -> tuple[Path, list[list[str]]]:
    """Two timepoints × two channels: t{t}/ch{c}.json, each a copy of one acquisition's
    tile JSON naming its own copies of the tile files."""
    import shutil
    base = tmp_path / "base"
    make_acquisition(base, grid=(2, 1, 1), tile=(48, 40, 12), overlap=0.3, jitter=3, seed=4,
                     truth=False, density=25)
    rows = []
    for t in range(2):
        row = []
        for c in range(2):
            folder = tmp_path / "tl" / f"t{t}"
            shutil.copytree(base / "tiles", folder / f"ch{c}")
            doc = json.loads((base / "tiles.json").read_text())
            for tile in doc:
                tile["file"] = f"ch{c}/{Path(tile['file']).name}"
            (folder / f"ch{c}.json").write_text(json.dumps(doc))
            row.append(str(folder / f"ch{c}.json"))
        rows.append(row)
    return tmp_path / "tl", rows


def stitch_job(tmp_path: Path, rows: list[list[str]], *overrides: str):
    from pipelines.registering import stitch
    job = tmp_path / "stitch.toml"
    job.write_text(f"[input]\ntimepoints = {json.dumps(rows)}\n{STITCH}")
    config = load_job(job, list(overrides), writes_output=False)
    return stitch(config, LocalExecutor(), stream=io.StringIO())


def test_switching_the_channel_or_the_timepoints_registered_is_not_refused(tmp_path, time_lapse):
    """Trial I: registering channel 1 after channel 0 (and back), or all timepoints after
    the first alone, was refused: "tiles-final.json is not as this tool's last
    registration wrote it (edited…)" — it was, by the registration of another channel
    or timepoints, whose report the check did not read. An edited file still is refused."""
    from pipelines.errors import OutputError
    folder, rows = time_lapse
    stitch_job(tmp_path, rows)
    stitch_job(tmp_path, rows, "stitching.channel=1")
    stitch_job(tmp_path, rows, "stitching.channel=0")
    stitch_job(tmp_path, rows[:1])
    stitch_job(tmp_path, rows)
    final = folder / "t1" / "ch1-final.json"
    final.write_text(final.read_text().replace("\n", "\n ", 1))
    with pytest.raises(OutputError, match="ch1-final.json is not as this tool's registrations wrote it"):
        stitch_job(tmp_path, rows, "stitching.force=false", "stitching.min_score=0.3")


def test_another_channels_tile_files_do_not_undo_the_reuse(tmp_path, time_lapse):
    """Trial I: touching a tile file of a channel or timepoint registration does not read
    measured every pair again for the same answer; the registered channel's still does."""
    folder, rows = time_lapse
    assert not stitch_job(tmp_path, rows).outcome.reused
    tile = next((folder / "t1" / "ch1").glob("*.tif"))
    os.utime(tile, ns=(time.time_ns(), tile.stat().st_mtime_ns + 10**9))
    assert stitch_job(tmp_path, rows).outcome.reused
    tile = next((folder / "t0" / "ch0").glob("*.tif"))
    os.utime(tile, ns=(time.time_ns(), tile.stat().st_mtime_ns + 10**9))
    assert not stitch_job(tmp_path, rows).outcome.reused

def test_a_new_timepoint_is_placed_without_measuring_again(tmp_path, time_lapse):
    """Trial I: a timepoint added to a registered time-lapse registered every pair again,
    for the same positions: registration measures the first timepoint's registered
    channel alone. Now the new timepoint's refined JSONs are written at the positions the
    report holds, and they equal those a full registration writes."""
    from pipelines.registering import stitch
    from pipelines.report.console import stitch_summary
    folder, rows = time_lapse
    stitch_job(tmp_path, rows[:1])
    job = tmp_path / "stitch.toml"
    job.write_text(f"[input]\ntimepoints = {json.dumps(rows)}\n{STITCH}")
    stream = io.StringIO()
    result = stitch(load_job(job, writes_output=False), LocalExecutor(), stream=stream)
    assert stream.getvalue() == "" and result.outcome.solution is None   # no pair measured
    new = [str(folder / "t1" / "ch0.json"), str(folder / "t1" / "ch1.json")]
    assert result.outcome.applied == tuple(new)
    assert stitch_summary(result) == (
        f"stitching: placed {new[0]} and 1 more at the positions registered in "
        f"{folder / 't0' / 'ch0-stitching.json'}, no pair measured again (the registered "
        f"tiles and [stitching] settings are unchanged; --set stitching.force=true registers again)")
    finals = [folder / "t1" / "ch0-final.json", folder / "t1" / "ch1-final.json"]
    placed = [f.read_bytes() for f in finals]
    assert stitch_job(tmp_path, rows).outcome.reused   # recorded: the next run reuses all
    stitch_job(tmp_path, rows, "stitching.force=true")   # measured from scratch
    assert [f.read_bytes() for f in finals] == placed


def test_an_edited_timepoint_json_is_placed_as_a_full_registration_places_it(tmp_path, time_lapse):
    """A tile JSON that is not measured, edited after the registration (a sub-voxel stage
    position: channels and timepoints share one geometry) is placed without measuring,
    where registering from scratch places it."""
    folder, rows = time_lapse
    stitch_job(tmp_path, rows)
    doc = json.loads((folder / "t1" / "ch1.json").read_text())
    doc[1]["position"][0] = float(np.floor(doc[1]["position"][0] + 0.5)) + 0.25   # the same voxel
    (folder / "t1" / "ch1.json").write_text(json.dumps(doc))
    result = stitch_job(tmp_path, rows)
    assert result.outcome.applied == (str(folder / "t1" / "ch1.json"),)
    final = folder / "t1" / "ch1-final.json"
    placed = final.read_bytes()
    assert not stitch_job(tmp_path, rows, "stitching.force=true").outcome.reused
    assert final.read_bytes() == placed


def test_a_new_timepoint_with_other_settings_registers_again_and_says_so(tmp_path, time_lapse):
    from pipelines.registering import stitch
    folder, rows = time_lapse
    stitch_job(tmp_path, rows[:1])
    job = tmp_path / "stitch.toml"
    job.write_text(f"[input]\ntimepoints = {json.dumps(rows)}\n{STITCH}")
    stream = io.StringIO()
    stitch(load_job(job, ["stitching.min_score=0.4"], writes_output=False), LocalExecutor(),
           stream=stream)
    assert (f"stitching: registering again: other [stitching] settings or input.views; new tile "
            f"JSONs ({folder / 't1' / 'ch0.json'} and 1 more)\n") in stream.getvalue(), stream.getvalue()


class StopsAfter(LocalExecutor):
    """Measures `rounds` rounds of pairs (counting them), then stops: `stop` names how
    (KeyboardInterrupt, Terminated, or "failure": a BlockFailed)."""

    def __init__(self, rounds: int, stop: str = "KeyboardInterrupt"):
        self.rounds, self.stop, self.measured = rounds, stop, 0

    def run(self, batch, on_progress):
        from pipelines.errors import BlockFailed, Terminated
        if self.rounds == 0:
            if self.stop == "failure":
                raise BlockFailed("a tile could not be read")
            raise {"KeyboardInterrupt": KeyboardInterrupt, "Terminated": Terminated}[self.stop]()
        self.rounds -= 1
        self.measured += len(batch.items)
        return super().run(batch, on_progress)


@pytest.fixture
def six_tiles(tmp_path, monkeypatch) -> Path:
    """A stitching job of 3 x 2 tiles whose pairs are measured one per round."""
    import pipelines.registering as registering
    monkeypatch.setattr(registering, "PAIRS_PER_ROUND", 1)
    make_acquisition(tmp_path / "acq", grid=(3, 2, 1), tile=(48, 40, 12), overlap=0.3,
                     jitter=3, seed=4, truth=False, density=25)
    job = tmp_path / "stitch.toml"
    job.write_text(f"[input]\ntiles = \"{tmp_path / 'acq' / 'tiles.json'}\"\n{STITCH}")
    return job


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "Terminated", "failure"])
def test_an_interrupted_registration_measures_only_the_rest_next_time(tmp_path, six_tiles, stop):
    """Trial J: SIGTERM (a scheduler's time limit) at pair 395 of 904 lost every pair
    measured and said "interrupted by SIGTERM before the run started; nothing was
    written". Pairs are measured in rounds, each recorded; the next run of the same
    registration measures only the rest, and finds what an uninterrupted run finds."""
    from pipelines.errors import BlockFailed, Interrupted
    from pipelines.registering import stitch
    job = six_tiles
    config = load_job(job, writes_output=False)
    record = tmp_path / "acq" / "tiles-stitching-pairs.json"
    first = StopsAfter(rounds=2, stop=stop)
    with pytest.raises(BlockFailed if stop == "failure" else Interrupted) as stopped:
        stitch(config, first, stream=io.StringIO())
    kept = len(json.loads(record.read_text())["pairs"])
    assert kept == first.measured > 0
    assert f"{kept} of " in str(stopped.value) and f"pairs measured are kept in {record}" in str(stopped.value)
    if stop != "failure":
        assert str(stopped.value).startswith(f"interrupted by SIG{'INT' if stop == 'KeyboardInterrupt' else 'TERM'} while registering")
    assert not (tmp_path / "acq" / "tiles-final.json").exists()
    again, stream = StopsAfter(rounds=100), io.StringIO()
    result = stitch(config, again, stream=stream)
    total = result.outcome.report["pairs"]["measured"] + result.outcome.report["pairs"]["unmatched"]
    assert f"stitching: resuming: {kept} of {total} pairs were measured by an interrupted run" in stream.getvalue()
    assert again.measured == total - kept and not record.exists()
    from pipelines.report.console import stitch_summary
    # trial L: the time per pair was of all pairs, though only the rest were measured
    assert f"s per pair of the {total - kept} tried now, {kept} by an interrupted run)" in \
        stitch_summary(result), stitch_summary(result)
    resumed = (tmp_path / "acq" / "tiles-final.json").read_bytes()
    whole = stitch(load_job(job, ["stitching.force=true"], writes_output=False), StopsAfter(rounds=100),
                   stream=io.StringIO())
    assert not whole.outcome.reused and (tmp_path / "acq" / "tiles-final.json").read_bytes() == resumed


def test_a_stop_while_solving_keeps_every_pair_measured(tmp_path, six_tiles, monkeypatch):
    """Trial AH: a Ctrl-C after the last round of pairs said "before the run started;
    nothing was written" and lost the last round, which was not recorded."""
    import pipelines.registering as registering
    from pipelines.errors import Interrupted
    config = load_job(six_tiles, writes_output=False)
    solve = registering.solve

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(registering, "solve", stopped)
    first = StopsAfter(rounds=100)
    with pytest.raises(Interrupted) as stop:
        registering.stitch(config, first, stream=io.StringIO())
    record = tmp_path / "acq" / "tiles-stitching-pairs.json"
    assert str(stop.value).startswith("interrupted by SIGINT while solving the registration; "
                                      f"{first.measured} of {first.measured} pairs measured are kept in {record}")
    assert not (tmp_path / "acq" / "tiles-final.json").exists()
    monkeypatch.setattr(registering, "solve", solve)
    again = StopsAfter(rounds=100)
    registering.stitch(config, again, stream=io.StringIO())
    assert again.measured == 0 and not record.exists()


def test_a_stop_while_the_results_are_written_waits_for_all_of_them(tmp_path, six_tiles, monkeypatch):
    """Trial AH: a Ctrl-C between the refined files and the picture left the last
    registration's picture beside new positions, and a report the next run reused. The
    stop now waits until the refined files, the report and the picture are written."""
    import signal

    from pipelines import errors
    from pipelines.errors import Interrupted
    from pipelines.registering import stitch
    from pipelines.registration import results
    config = load_job(six_tiles, writes_output=False)
    stitch(config, StopsAfter(rounds=100), stream=io.StringIO())
    picture = tmp_path / "acq" / "tiles-stitching.png"
    picture.write_bytes(b"the last registration's picture")
    write_refined = results._write_refined

    def stopped_midway(*args, **kwargs):
        written = write_refined(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)   # before the picture
        return written
    monkeypatch.setattr(results, "_write_refined", stopped_midway)
    before = signal.getsignal(signal.SIGINT)
    errors.install_signal_handlers()
    try:
        with pytest.raises(Interrupted) as stop:
            stitch(load_job(six_tiles, ["stitching.force=true"], writes_output=False),
                   StopsAfter(rounds=100), stream=io.StringIO())
    finally:
        errors.forget_stop()
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report = tmp_path / "acq" / "tiles-stitching.json"
    assert str(stop.value) == (f"interrupted by SIGINT once the registration was written ({report}); "
                               f"the next run reuses it")
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "acq" / "tiles-stitching-pairs.json").exists()


def test_the_pairs_a_forced_run_keeps_are_for_a_run_without_force(tmp_path, six_tiles):
    """Trial AH: an interrupted stitching.force run promised that "the next run measures
    only the rest"; with force the next measures every pair again."""
    from pipelines.errors import Interrupted
    from pipelines.registering import stitch
    with pytest.raises(Interrupted) as stop:
        stitch(load_job(six_tiles, ["stitching.force=true"], writes_output=False), StopsAfter(rounds=2),
               stream=io.StringIO())
    assert "the next run of this registration without stitching.force measures only the rest" in str(stop.value)


def test_the_dry_run_of_a_new_timepoint_plans_at_the_registered_positions(tmp_path, time_lapse):
    """Review G: the dry run planned a timepoint added after the registration at the stage
    positions and counted pairs to register, where the export places it without
    measuring: it now decides as the export does."""
    from pipelines.plan.dryrun import dry_run
    folder, rows = time_lapse
    stitch_job(tmp_path, rows[:1])
    job = tmp_path / "export.toml"
    job.write_text(f"[input]\ntimepoints = {json.dumps(rows)}\n[output]\nuri = \"{tmp_path / 'out'}\"\n"
                   f"chunks = [16, 16, 8]\nlayout = \"bdv\"\n{STITCH}")
    planned = dry_run(load_job(job))
    assert planned.pairs is None and planned.registered == str(folder / "t0" / "ch0-stitching.json")
    result = export(load_job(job), LocalExecutor(), stream=io.StringIO())
    assert result.stitching.outcome.applied and planned.shapes == result.plan.output.shapes
    assert sum(planned.objects) == result.summary.objects_written + result.summary.objects_skipped


def test_a_report_whose_positions_were_edited_is_not_used_to_place(tmp_path, time_lapse):
    """Review G: the positions a new timepoint is placed at come from the report, which no
    checksum guarded; edited (or NaN), the registration runs again instead."""
    folder, rows = time_lapse
    stitch_job(tmp_path, rows[:1])
    report = folder / "t0" / "ch0-stitching.json"
    doc = json.loads(report.read_text())
    doc["tile_results"][1]["position"][0] += 5
    report.write_text(json.dumps(doc))
    result = stitch_job(tmp_path, rows)
    assert not result.outcome.applied and result.outcome.solution is not None


def test_a_removed_timepoint_says_what_was_placed(tmp_path, time_lapse):
    """Review G: with a timepoint only removed, the line said "reused … (stage positions
    unchanged)" while the refined files were written again from the report."""
    from pipelines.report.console import stitch_summary
    folder, rows = time_lapse
    stitch_job(tmp_path, rows)
    result = stitch_job(tmp_path, rows[:1])
    assert result.outcome.applied == (str(folder / "t0" / "ch1.json"),)
    assert stitch_summary(result).startswith(f"stitching: placed {folder / 't0' / 'ch1.json'} at "
                                             f"the positions registered in")


def test_force_measures_every_pair_even_with_a_record_of_an_interrupted_run(tmp_path, six_tiles):
    """Review G: stitching.force (the way out where the fingerprint cannot see changed
    pixels) resumed the pairs an interrupted run had recorded."""
    from pipelines.errors import Interrupted
    from pipelines.registering import stitch
    job = six_tiles
    with pytest.raises(Interrupted):
        stitch(load_job(job, writes_output=False), StopsAfter(rounds=2), stream=io.StringIO())
    record = tmp_path / "acq" / "tiles-stitching-pairs.json"
    assert record.exists()
    forced, stream = StopsAfter(rounds=100), io.StringIO()
    result = stitch(load_job(job, ["stitching.force=true"], writes_output=False), forced, stream=stream)
    total = result.outcome.report["pairs"]["measured"] + result.outcome.report["pairs"]["unmatched"]
    assert "resuming" not in stream.getvalue() and forced.measured == total and not record.exists()


def test_a_reused_registration_drops_the_record_of_an_interrupted_forced_run(tmp_path, six_tiles):
    """Trial V: a stitching.force run interrupted midway kept its pairs; the next run
    reused the registration, still valid, and the record stayed beside the tile JSON."""
    from pipelines.errors import Interrupted
    from pipelines.registering import stitch
    job = six_tiles
    stitch(load_job(job, writes_output=False), StopsAfter(rounds=100), stream=io.StringIO())
    with pytest.raises(Interrupted):
        stitch(load_job(job, ["stitching.force=true"], writes_output=False), StopsAfter(rounds=2),
               stream=io.StringIO())
    record = tmp_path / "acq" / "tiles-stitching-pairs.json"
    assert record.exists()
    result = stitch(load_job(job, writes_output=False), StopsAfter(rounds=0), stream=io.StringIO())
    assert result.outcome.reused and not record.exists()


def test_a_finished_stitching_job_run_again_says_there_is_nothing_to_do(tmp_path, acq):
    """Trial L: a job that registers, run again on its committed output, was told "pass
    --overwrite to replace it", as a stranger's dataset would be. With its registration
    reused the positions are known before any work: nothing to do (AlreadyDone: exit 0).
    A registration that would run again (forced) is refused before it runs: the tile
    files and output settings are the same, the rest cannot be told, nothing is written."""
    from pipelines.errors import AlreadyDone, OutputError
    run(tmp_path, acq, "first")
    report = acq / "tiles-stitching.json"
    written = report.read_bytes()
    with pytest.raises(AlreadyDone, match=r"already holds this job's committed dataset"):
        run(tmp_path, acq, "first")
    with pytest.raises(OutputError, match=r"already holds a committed dataset of these tile files "
                                          r"and output settings .*; this run would register the "
                                          r"tiles, estimate their fields or match their "
                                          r"intensities anew first"):
        run(tmp_path, acq, "first", "stitching.force=true")
    assert report.read_bytes() == written
    with pytest.raises(OutputError, match=r"already holds a committed dataset \(.*\) with other "
                                          r"settings; choose another"):
        run(tmp_path, acq, "first", "output.chunks=[32, 32, 8]")


def test_a_finished_job_with_every_correction_run_again_exits_0(tmp_path, capsys):
    """The command line of a rerun of a finished job that estimates its flatfield,
    registers and matches intensities: every step is reused and the job exits 0 saying
    there is nothing to do (a scheduler resubmitting it sees success); the dataset is
    untouched."""
    from pipelines.cli.export import main
    acq = tmp_path / "acq"   # shaded tiles, enough to estimate a flatfield from
    make_acquisition(acq, grid=(6, 6, 1), tile=(64, 64, 8), jitter=2, seed=3, truth=False,
                     falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=3.0)
    job = write_job(tmp_path / "all.toml", str(acq / "tiles.json"), str(tmp_path / "all" / "volume"),
                    extra=STITCH + '[fusion]\nflatfield = "auto"\nintensity = "match"\n')
    export(load_job(job), LocalExecutor(), stream=io.StringIO())
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "all").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([str(job), "--set", "spark.master=local[1]"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: ") and "already holds this job's committed dataset" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "all").rglob("*") if p.is_file()} == before
    # review H: [flatfield] enabled estimates anew every run; refused before that work
    fields = {p: p.stat().st_mtime_ns for p in (acq / "tiles-flatfield").iterdir()}
    assert main([str(job), "--set", "spark.master=local[1]", "--set", "flatfield.enabled=true"]) == 2
    assert "estimate their fields or match their intensities anew first" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (acq / "tiles-flatfield").iterdir()} == fields
    # trial X: the dry run passed it (exit 0) where the run refuses; it refuses alike
    assert main([str(job), "--dry-run", "--set", "flatfield.enabled=true"]) == 2
    assert "estimate their fields or match their intensities anew first" in capsys.readouterr().err
    assert main([str(job), "--dry-run"]) == 0 and "holds a committed dataset" in capsys.readouterr().out
    # trial X: coefficients to be matched anew (here: their file no longer says what they
    # were matched from) were matched and their file rewritten before the refusal
    [coefficients] = acq.glob("*intensity*.json")
    document = json.loads(coefficients.read_text())
    document["reuse"]["fingerprint"] = "0" * 32
    coefficients.write_text(json.dumps(document))
    edited = coefficients.read_bytes()
    named = []
    for dry in ([], ["--dry-run"]):
        assert main([str(job), "--set", "spark.master=local[1]", *dry]) == 2
        err = capsys.readouterr().err
        assert "match their intensities anew first" in err
        named += re.findall(r"committed dataset [^(]*\(([^)]+)\)", err)
    assert coefficients.read_bytes() == edited
    # trial Y: the dry run named the root's attributes.json, the run the first array's
    assert len(named) == 2 and named[0] == named[1] and named[0].endswith("/attributes.json"), named


@pytest.mark.parametrize("stitching", [True, False])
def test_checks_made_with_the_fields_there_are_stand_for_the_export(tmp_path, monkeypatch, stitching):
    """Review of stop 46: a job that matches intensities through fields it already has
    checked its tile files twice and fingerprinted each channel's coefficients three
    times (the check before work, again before stitching, then the matching): on S3 a HEAD
    per tile each time. Once each now; once the fields are estimated, the check is made
    again with them (their memory), as before. Read-again of stop 47: the registration's
    and the coefficients' fingerprints took every tile file's identity once more each
    (2 × 100 000 HEADs at 100 000 tiles on S3); they are made of the check's now."""
    import pipelines.illumination.matched as matched
    import pipelines.plan as planning
    import pipelines.tiles.identity as identity
    import pipelines.tiles.readers as readers
    acq = tmp_path / "acq"   # shaded tiles, enough to estimate a flatfield from
    make_acquisition(acq, grid=(6, 6, 1), tile=(64, 64, 8), jitter=2, seed=3, truth=False,
                     falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=3.0)
    extra = (STITCH if stitching else "") + '[fusion]\nflatfield = "auto"\nintensity = "match"\n'
    calls = {"checks": 0, "fingerprints": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(planning, "check_tile_files", counted("checks", planning.check_tile_files))
    monkeypatch.setattr(matched, "matching_fingerprint",
                        counted("fingerprints", matched.matching_fingerprint))
    asked: dict[str, int] = {}   # identity look-ups by tile file

    def looked_up(function):
        def wrapper(path, s3):
            asked[path] = asked.get(path, 0) + 1
            return function(path, s3)
        return wrapper
    for module in (identity, readers):   # the checks' and everyone else's
        monkeypatch.setattr(module, "file_identity", looked_up(module.file_identity))
    for name, estimated in (("first", True), ("second", False)):
        calls.update(checks=0, fingerprints=0)
        asked.clear()
        job = write_job(tmp_path / f"{name}.toml", str(acq / "tiles.json"),
                        str(tmp_path / name / "volume"), extra=extra)
        stream = io.StringIO()
        result = export(load_job(job), LocalExecutor(), stream=stream)
        assert bool(result.corrections.get("flatfield_seconds")) == estimated, stream.getvalue()
        # estimated: checked without the fields, then with them; the coefficients matched
        # once (the check without fields does not ask whether they can be reused)
        assert calls == ({"checks": 2, "fingerprints": 1} if estimated else
                         {"checks": 1, "fingerprints": 1}), (name, calls)
        # every tile file once per check (the fingerprints are made of the check's), and
        # once more before the commit (confirm.check_tiles_unchanged: trial AM)
        assert len(asked) == 36 and set(asked.values()) == {calls["checks"] + 1}, (name, asked)
        reused = [line for line in stream.getvalue().splitlines()
                  if line.startswith("intensities of ") and ": reused (" in line]
        assert len(reused) == (0 if estimated else 1), stream.getvalue()


def test_coefficients_to_be_matched_anew_are_not_measured_before_the_refusal(tmp_path, capsys):
    """Trial Y: a job that matches intensities but does not register had its coefficients
    measured again and their file rewritten, then its committed output refused (or, when
    they came out the same, 'nothing to do'). Coefficients that cannot be reused are work
    before which a committed output is refused, in the run and in the dry run."""
    from pipelines.cli.export import main
    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(3, 2, 1), tile=(48, 40, 8), jitter=0, seed=4, truth=False,
                     gains=(0.7, 1.0))
    job = write_job(tmp_path / "match.toml", str(acq / "tiles.json"), str(tmp_path / "out" / "volume"),
                    extra='[fusion]\nintensity = "match"\n')
    export(load_job(job), LocalExecutor(), stream=io.StringIO())
    [coefficients] = acq.glob("*intensity*.json")
    capsys.readouterr()
    assert main([str(job), "--set", "spark.master=local[1]"]) == 0   # reused: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    (acq / "tiles.json").write_text((acq / "tiles.json").read_text() + "\n")   # its text changed
    before = coefficients.read_bytes()
    for dry in (["--dry-run"], []):
        assert main([str(job), "--set", "spark.master=local[1]", *dry]) == 2
        err = capsys.readouterr().err
        assert "match their intensities anew first" in err and "intensity pairs" not in err, err
    assert coefficients.read_bytes() == before


def test_a_record_of_other_settings_is_named_when_it_is_not_resumed(tmp_path, six_tiles):
    """Trial L: a registration whose settings changed after an interruption measured every
    pair again without a word about the pairs recorded; it now says so, and how many."""
    from pipelines.errors import Interrupted
    from pipelines.registering import stitch
    job = six_tiles
    with pytest.raises(Interrupted):
        stitch(load_job(job, writes_output=False), StopsAfter(rounds=2), stream=io.StringIO())
    record = tmp_path / "acq" / "tiles-stitching-pairs.json"
    kept = len(json.loads(record.read_text())["pairs"])
    again, stream = StopsAfter(rounds=100), io.StringIO()
    result = stitch(load_job(job, ["stitching.min_score=0.4"], writes_output=False), again, stream=stream)
    total = result.outcome.report["pairs"]["measured"] + result.outcome.report["pairs"]["unmatched"]
    assert (f"stitching: not resuming the {kept} pairs an interrupted run measured with other "
            f"inputs or settings ({record}): every pair is measured again") in stream.getvalue()
    assert again.measured == total and "resuming:" not in stream.getvalue()


def test_results_of_an_earlier_version_are_named_as_such_also_by_the_dry_run(tmp_path, acq, capsys):
    """Trial T: the results of a version whose report recorded no checksums of what it
    wrote were "not as this tool's registrations wrote it (edited, or written by another
    tool)", and the dry run planned the registration the run then refused."""
    from pipelines.cli.export import main as export_main
    from pipelines.errors import OutputError
    run(tmp_path, acq, "first")
    report = acq / "tiles-stitching.json"
    doc = json.loads(report.read_text())
    doc.pop("reuse")
    report.write_text(json.dumps(doc))
    said = (f"{acq / 'tiles-final.json'} is not as this tool's registrations wrote it (edited, or "
            f"written by another tool; its report ({report}) is an earlier version's, which did "
            f"not record what it wrote)")
    with pytest.raises(OutputError) as refused:
        run(tmp_path, acq, "again")
    assert said in str(refused.value)
    job = write_job(tmp_path / "dry.toml", str(acq / "tiles.json"), str(tmp_path / "dry" / "volume"),
                    extra=STITCH)
    capsys.readouterr()
    assert export_main([str(job), "--dry-run"]) == 2
    assert said in capsys.readouterr().err


def test_the_results_of_a_moved_acquisition_are_still_this_tools(tmp_path, acq):
    """Trial W: an acquisition folder copied elsewhere with its registration was refused,
    "not as this tool's registrations wrote it", as its report recorded the results under
    their old paths. They are this tool's: the copy registers again (its tile JSON is
    another) and says why."""
    import shutil
    run(tmp_path, acq, "first")
    moved = tmp_path / "moved"
    shutil.copytree(acq, moved)
    result, printed = run(tmp_path, moved, "again")
    assert f"stitching: registering again: new tile JSONs ({moved / 'tiles.json'})" in printed, printed
    assert " tried in " in printed and not result.stitching.outcome.reused


def test_a_changed_project_is_called_a_project_xml():
    """Trial AS: a project whose view moved registered again for 'changed tile JSONs
    (dataset.xml)'."""
    from pipelines.registration.reuse import why_again
    then = {"version": "v", "method": 1, "settings": "s", "tiles": "t", "inputs": {"p/dataset.xml": "a"}}
    now = {**then, "inputs": {"p/dataset.xml": "b"}}
    assert why_again({"reuse": {"parts": then}}, now) == "changed project XML (p/dataset.xml)"
    json_then = {**then, "inputs": {"p/tiles.json": "a"}}
    assert why_again({"reuse": {"parts": json_then}}, {**json_then, "inputs": {"p/tiles.json": "b"}}) \
        == "changed tile JSONs (p/tiles.json)"
    assert why_again({"reuse": {"parts": json_then}}, now) == \
        "new project XML (p/dataset.xml); tile JSONs no longer listed (p/tiles.json)"   # review
