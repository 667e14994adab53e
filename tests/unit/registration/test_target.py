"""What is registered: `stitching.channel` by index or by name (input.channel_names, the
tile JSONs' file names, a BigStitcher project's channel names)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.config import load_job
from pipelines.errors import ConfigError
from pipelines.registration.results import registration_target
from pipelines.testing.synthetic import make_acquisition


def job_file(path: Path, tiles: str, extra: str = "") -> Path:
    path.write_text(f'[input]\ntiles = {tiles}\n{extra}\n[output]\nuri = "{path.parent}/out"\n'
                    f'[stitching]\nenabled = true\n')
    return path


@pytest.fixture(scope="module")
def two_channels(tmp_path_factory) -> tuple[Path, Path]:
    """One small acquisition's tile JSON copied as ch0.json and ch1.json."""
    folder = tmp_path_factory.mktemp("two-channels")
    make_acquisition(folder, grid=(2, 1, 1), tile=(32, 24, 8), overlap=0.3, jitter=2,
                     seed=1, truth=False)
    for name in ("ch0", "ch1"):
        shutil.copy(folder / "tiles.json", folder / f"{name}.json")
    return folder / "ch0.json", folder / "ch1.json"


def test_a_tile_json_channel_is_named_by_its_file_name(tmp_path, two_channels):
    tiles = f'["{two_channels[0]}", "{two_channels[1]}"]'
    assert load_job(job_file(tmp_path / "job.toml", tiles), ["stitching.channel=ch1"]).stitching.channel == 1
    named = job_file(tmp_path / "named.toml", tiles, 'channel_names = ["dapi", "gfp"]')
    assert load_job(named, ["stitching.channel=gfp"]).stitching.channel == 1
    with pytest.raises(ConfigError, match=r"stitching\.channel: expected a channel index below 2 "
                                          r"or one of the channel names \(ch0, ch1\), found 'gfp'$"):
        load_job(job_file(tmp_path / "job.toml", tiles), ["stitching.channel=gfp"])


def two_channel_project(folder: Path) -> Path:
    from tests.bigstitcher_project import View, scenario, write_project
    grid = scenario("grid")
    views = grid + [View(v.setup + len(grid), v.size, v.chain, v.voxel, tile=v.tile, channel=1)
                    for v in grid]
    return write_project(folder, views, "tiff")


def test_a_project_channel_is_named_by_the_project(tmp_path):
    """The project names its channels channel0, channel1 (tests.bigstitcher_project)."""
    job = job_file(tmp_path / "job.toml", f'"{two_channel_project(tmp_path / "acq")}"')
    target = registration_target(load_job(job, ["stitching.channel=channel1"]))
    assert {Path(t.path).name for t in target.reference} == {f"view-{s}.tif" for s in range(4, 8)}
    # with input.views, the names (and indices) are those of the selected channels
    selected = load_job(job, ["stitching.channel=channel1", "input.views={channel=[1]}"])
    assert {Path(t.path).name for t in registration_target(selected).reference} == \
        {f"view-{s}.tif" for s in range(4, 8)}
    with pytest.raises(ConfigError) as refused:
        registration_target(load_job(job, ["stitching.channel=gfp"]))
    assert str(refused.value) == ("stitching.channel: the project has 2 channel(s) (channel0, "
                                  "channel1): expected an index below 2 or one of these names, "
                                  "found 'gfp'")
    # a name outside the selection: the message counts the selected channels as such
    with pytest.raises(ConfigError, match=r"the views input.views selects hold 1 channel\(s\) "
                                          r"\(channel1\)"):
        registration_target(load_job(job, ["stitching.channel=channel0", "input.views={channel=[1]}"]))


def test_tiles_of_which_no_two_can_overlap_are_refused_before_anything_runs(tmp_path):
    """Tiles 100 voxels apart with search 8: no pair to measure, so `tile-stitch` and an
    export with [stitching] enabled stop in one line saying how to go on, before any
    executor work and with nothing written (the output and beside the tile JSON)."""
    import io
    import json

    from pipelines.driver import export
    from pipelines.execute.executor import LocalExecutor
    from pipelines.plan.dryrun import dry_run
    from pipelines.registering import stitch

    folder = tmp_path / "acq"
    make_acquisition(folder, grid=(2, 1, 1), tile=(32, 24, 8), overlap=0.3, jitter=0, seed=1,
                     truth=False)
    doc = json.loads((folder / "tiles.json").read_text())
    doc[1]["position"][0] += 100
    (folder / "tiles.json").write_text(json.dumps(doc))
    before = sorted(p.name for p in folder.iterdir())
    config = load_job(job_file(tmp_path / "job.toml", f'"{folder / "tiles.json"}"'),
                      ["stitching.search=8"])

    class NoWork(LocalExecutor):
        def run(self, batch, on_progress):
            raise AssertionError("no executor work may start")

    expected = (r"^stitching: no two of the 2 tiles can overlap by stitching\.min_overlap "
                r"\[8, 8, 4\] voxels within stitching\.search \[8, 8, 8\] voxels of their "
                r"stage positions, so nothing can be registered: give a larger "
                r"stitching\.search if the stage positions are farther off \(an export at the "
                r"stage positions sets \[stitching\] enabled = false\)$")   # tile-stitch too (trial AH)
    with pytest.raises(ConfigError, match=expected):
        stitch(config, NoWork(), stream=io.StringIO())
    with pytest.raises(ConfigError, match=expected):
        export(config, NoWork(), stream=io.StringIO())
    with pytest.raises(ConfigError, match=expected):
        dry_run(config)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert not (tmp_path / "out").exists()
    # the stage positions are close enough once search covers the gap
    assert dry_run(load_job(tmp_path / "job.toml", ["stitching.search=100"])).pairs == 1


@pytest.mark.parametrize("setting", ['fusion.flatfield="auto"', "flatfield.enabled=true"])
def test_no_overlap_is_refused_before_flatfield_fields_are_estimated(tmp_path, setting):
    """Defect (trial E, item 6): an export estimates missing flatfield fields (minutes of
    executor work) before it stitches, and only then found that no two tiles overlap.
    Stitching's checks now run with the others, before any executor work."""
    import io
    import json

    from pipelines.driver import export
    from pipelines.execute.executor import LocalExecutor

    folder = tmp_path / "acq"
    make_acquisition(folder, grid=(3, 2, 1), tile=(32, 24, 8), overlap=0.3, jitter=0, seed=1,
                     truth=False)
    doc = json.loads((folder / "tiles.json").read_text())
    for tile in doc:   # 4 × the stage steps: 60-70 voxel gaps between neighbours
        tile["position"] = [4 * p for p in tile["position"]]
    (folder / "tiles.json").write_text(json.dumps(doc))
    before = sorted(p.name for p in folder.iterdir())

    class NoWork(LocalExecutor):
        def run(self, batch, on_progress):
            raise AssertionError(f"no executor work may start ({batch.description})")

    config = load_job(job_file(tmp_path / "job.toml", f'"{folder / "tiles.json"}"'),
                      ["stitching.search=8", setting])
    with pytest.raises(ConfigError, match=r"^stitching: no two of the 6 tiles can overlap"):
        export(config, NoWork(), stream=io.StringIO())
    assert sorted(p.name for p in folder.iterdir()) == before
    assert not (tmp_path / "out").exists()
