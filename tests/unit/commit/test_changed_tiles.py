"""A tile file that changes between runs: an unfinished run made from the old file is never
continued (its chunks would mix old and new pixels), a committed dataset is never touched.
(A rerun with other settings: tests/unit/commit/test_commit.py)"""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import tifffile

from pipelines.commit.output import check_output
from pipelines.commit.records import fingerprint
from pipelines.driver import export
from pipelines.errors import AlreadyDone, OutputError
from pipelines.execute.executor import LocalExecutor
from pipelines.plan import make_plan
from pipelines.storage import LocalStore, beside_store
from pipelines.testing.synthetic import make_acquisition
from tests.pipeline_helpers import export_local
from tests.unit.commit.test_commit import RECORDING_ALL_BUT_THE_LAST, config_for, failed_run


@pytest.fixture
def acquisition(tmp_path) -> dict:
    """small_acquisition's tiles, but this test's own: the tests here replace one."""
    return make_acquisition(tmp_path / "acq", grid=(2, 2, 1), tile=(64, 48, 16), overlap=0.2,
                            jitter=0, seed=7, falloff=0.0, noise=True, truth=False)


def first_tile(acquisition: dict) -> Path:
    tiles = json.loads(Path(acquisition["paths"]["tiles_json"]).read_text())
    return Path(acquisition["paths"]["tiles_json"]).parent / tiles[0]["file"]


def replace_tile(path: Path) -> None:
    """Another stack of the same shape and type in its place (same size in bytes), as a
    user who re-acquires or fixes a tile does; its time moves on by a second, as a copy's
    would, also where the file system keeps coarse times."""
    before = path.stat().st_mtime_ns
    pixels = tifffile.imread(path)
    tifffile.imwrite(path, (pixels // 2 + 100).astype(pixels.dtype), contiguous=True)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_rerun_after_a_tile_file_changed_starts_over(tmp_path, acquisition):
    """Defect: the rerun resumed the failed run's blocks, made from the old file, and
    computed the rest from the new one (36 chunks of a demo differed from a clean run)."""
    failed_run(tmp_path, acquisition, *RECORDING_ALL_BUT_THE_LAST)  # 23 of 24 blocks
    replace_tile(first_tile(acquisition))
    stream = io.StringIO()
    result = export(config_for(tmp_path, acquisition), LocalExecutor(), stream=stream)
    assert not result.plan.rerun and result.resumed == 0
    assert ("discarding an unfinished run made from other tile files or before they changed (23 of 24 blocks "
            "were recorded)") in stream.getvalue()
    (tmp_path / "clean").mkdir()
    export_local(config_for(tmp_path / "clean", acquisition))
    assert files_under(tmp_path / "out") == files_under(tmp_path / "clean/out")


def test_the_fingerprint_follows_the_tile_files_size_and_time(tmp_path, acquisition):
    """Untouched tiles: the same fingerprint every time (a rerun resumes, a committed
    dataset is recognised); a new modification time alone is another one."""
    config = config_for(tmp_path, acquisition)
    first = fingerprint(make_plan(config))
    assert fingerprint(make_plan(config)) == first
    tile = first_tile(acquisition)
    later = tile.stat().st_mtime_ns + 10**9
    os.utime(tile, ns=(later, later))
    assert fingerprint(make_plan(config)) != first


def test_a_committed_dataset_stays_as_it_is_when_its_tiles_change(tmp_path, acquisition):
    """A committed export is refused as before, whether its tiles changed or not: it
    is what the tiles were (verify still passes); --overwrite exports the new ones."""
    config = config_for(tmp_path, acquisition)
    export_local(config)
    out = tmp_path / "out"
    committed = files_under(out)
    for stop, message in ((AlreadyDone, r"already holds this job's committed dataset"),  # untouched
                          (OutputError, r"already holds a committed dataset \(.*\) made from other "
                                        r"tile files or before they changed; choose another")):   # a tile replaced
        with pytest.raises(stop, match=message):
            export_local(config)
        assert files_under(out) == committed
        replace_tile(first_tile(acquisition))
    assert export_local(config, overwrite=True).summary.blocks > 0
    assert files_under(out) != committed
    # trial Y: --overwrite left the previous run's ledger folder behind, empty
    assert [p.name for p in (tmp_path / "out.job").iterdir()] == [fingerprint(make_plan(config))]


def test_an_unfinished_commit_is_not_finished_from_changed_tiles(tmp_path, acquisition):
    """A commit cut short, then a tile replaced: the rerun cannot finish that commit (its
    chunks are of the old file) and says what to do; nothing is deleted."""
    config = config_for(tmp_path, acquisition)
    export_local(config)
    record_file = tmp_path / "out.job.json"
    record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "status": "committing"}))
    out = tmp_path / "out"
    before = files_under(out)
    replace_tile(first_tile(acquisition))
    with pytest.raises(OutputError, match=r"unfinished commit of this job made before its tile "
                                          r"files changed .*pass --overwrite"):
        check_output(make_plan(config), LocalStore(out), beside_store(str(out)))
    assert files_under(out) == before


def test_the_fingerprint_of_each_plan_is_its_own_when_plans_alternate(tmp_path, acquisition):
    """The settings' digest is kept for the last plan asked about (a run asks ≈ 8 times):
    plans that share most parts, asked about in turn, each still get their own."""
    plan = make_plan(config_for(tmp_path, acquisition))
    other_blending = replace(plan, blending="average" if plan.blending != "average" else "linear")
    fewer_tiles = replace(plan, tiles=((replace(plan.tiles[0][0], tiles=plan.tiles[0][0].tiles[1:]),),))
    same_again = replace(plan, rerun=True)   # not part of the output's identity
    prints = [fingerprint(p) for p in (plan, other_blending, plan, fewer_tiles, plan, same_again)]
    assert prints[0] == prints[2] == prints[4] == prints[5]
    assert len({prints[0], prints[1], prints[3]}) == 3
    assert fingerprint(make_plan(config_for(tmp_path, acquisition))) == prints[0]   # new objects


def test_a_field_added_to_the_plan_is_part_of_the_fingerprint_unless_named_run_only(tmp_path, acquisition):
    """Review: the fingerprint listed the plan fields it took, so a new setting that changes
    the bytes but was not added there would let a resume mix objects written both ways.
    It now takes every field but RUN_ONLY_FIELDS."""
    import dataclasses

    from pipelines.commit.records import RUN_ONLY_FIELDS
    from pipelines.plan import ExportPlan

    @dataclasses.dataclass(frozen=True)
    class PlanWithANewSetting(ExportPlan):
        sharpen: float = 0.0

    plan = make_plan(config_for(tmp_path, acquisition))
    grown = PlanWithANewSetting(**{f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)})
    assert fingerprint(grown) == fingerprint(replace(grown, sharpen=0.0))
    assert fingerprint(replace(grown, sharpen=0.5)) != fingerprint(grown)
    names = {f.name for f in dataclasses.fields(ExportPlan)}
    assert names > RUN_ONLY_FIELDS   # no stale name
    for name in ("tile_cache", "checkpoint_seconds", "resume_verify"):   # and these stay out
        changed = {"tile_cache": 1, "checkpoint_seconds": 1.0, "resume_verify": "checksum"}[name]
        assert fingerprint(replace(plan, **{name: changed})) == fingerprint(plan)


class RewritesATileMidway(LocalExecutor):
    """Runs the tasks as LocalExecutor does, and replaces `tile` after the first one: a
    tile file still being copied or re-exported while the run goes."""

    def __init__(self, tile: Path):
        self.tile = tile

    def run(self, batch, on_progress):
        def progress(done, stored):
            if done == 1:
                replace_tile(self.tile)
            on_progress(done, stored)
        return super().run(batch, progress)


def test_a_tile_file_that_changes_while_the_run_reads_it_is_not_committed(tmp_path, acquisition):
    """Trial AM: a tile rewritten while the tasks ran was committed half old, half new
    (32 767 voxels matching neither file), and tile-verify passed it. The commit now takes
    the tiles' identities again and refuses; the next run starts over from the new file."""
    from pipelines.errors import TileError
    config = config_for(tmp_path, acquisition, "output.block=[1,1,1]", "spark.blocks_per_task=1")
    with pytest.raises(TileError, match="commit refused, nothing was published: tile files "
                                        "changed while the run read them") as refused:
        export(config, RewritesATileMidway(first_tile(acquisition)), stream=io.StringIO())
    assert f"them ({first_tile(acquisition)}) (a size" in str(refused.value)   # named (AP)
    assert not list((tmp_path / "out").rglob("attributes.json")), "metadata was published"
    from pipelines.maintenance.verify import open_output, verify
    with pytest.raises(OutputError, match="its tile files changed while it ran: once they are "
                                          "final, run the same job again to start over"):
        verify(*open_output(str(tmp_path / "out"), [])[1:], str(tmp_path / "out"))   # trial AP
    stream = io.StringIO()
    result = export(config, LocalExecutor(), stream=stream)
    assert result.resumed == 0 and "made from other tile files or before they changed" in stream.getvalue()
    (tmp_path / "clean").mkdir()
    export_local(config_for(tmp_path / "clean", acquisition, "output.block=[1,1,1]"))
    assert files_under(tmp_path / "out") == files_under(tmp_path / "clean/out")
