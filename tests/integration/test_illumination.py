"""Flatfield and intensity matching through the real driver (LocalExecutor) and the
console scripts, judged against the phantom: the reduced figures of issue 15."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from pipelines.cli.export import main as export_main
from pipelines.cli.flatfield import main as flatfield_main
from pipelines.config import build_config, load_job
from pipelines.corrections import estimate_flatfield
from pipelines.driver import export
from pipelines.execute.executor import LocalExecutor
from pipelines.illumination.estimate import Fields
from pipelines.illumination.fields import FlatfieldError, write_fields
from pipelines.spark import SparkExecutor
from pipelines.testing.evenness import relative_error, seam_contrast
from pipelines.testing.synthetic import BACKGROUND, illumination, make_acquisition
from tests.conftest import ROOT

TILE = (48, 48, 8)


@pytest.fixture(scope="module")
def shaded(tmp_path_factory) -> dict:
    """8 x 8 tiles under a 40 % vignetting, a dark offset of 100 and gains 0.6-1.0."""
    out = tmp_path_factory.mktemp("shaded")
    return make_acquisition(out, grid=(8, 8, 1), tile=TILE, jitter=0, seed=3, falloff=0.4,
                            dark=100.0, gains=(0.6, 1.0), density=3.0)


@pytest.fixture(scope="module")
def shaded_flat(tmp_path_factory) -> dict:
    """The same, of a sample without a trend across the stage (one background level)."""
    out = tmp_path_factory.mktemp("shaded-flat")
    return make_acquisition(out, grid=(8, 8, 1), tile=TILE, jitter=0, seed=3, falloff=0.4,
                            dark=100.0, gains=(0.6, 1.0), density=3.0, waves=False)


def fused(acq: dict, name: str, **fusion) -> np.ndarray:
    folder = Path(acq["paths"]["tiles"]).parent
    raw = {"input": {"tiles": acq["paths"]["tiles_json"]},
           "output": {"uri": str(folder / f"{name}.zarr"), "format": "zarr2", "chunks": [64, 64, 8]},
           "fusion": {"blending": "closest", **fusion}}
    export(build_config(raw, source=str(folder / "job.toml")), LocalExecutor(), stream=io.StringIO())
    return np.asarray(zarr.open_array(str(folder / f"{name}.zarr" / "0"), mode="r")[...])


def digests(folder: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def test_corrections_even_out_the_fused_volume(shaded):
    """Against the noise-free phantom: the fused error drops, the seams nearly vanish, the
    fields and coefficients are written beside the tile JSON, the tiles stay as they were."""
    truth = np.load(shaded["paths"]["ground_truth"])
    positions = [tuple(int(v) for v in t["position"])
                 for t in json.loads(Path(shaded["paths"]["tiles_true_json"]).read_text())]
    tiles_before = digests(shaded["paths"]["tiles"])
    plain = fused(shaded, "plain")
    even = fused(shaded, "even", flatfield="auto", intensity="match")
    folder = Path(shaded["paths"]["tiles_json"]).parent
    for name in ("S.tif", "T.tif"):
        field = tifffile.imread(folder / "tiles-flatfield" / name)
        assert field.shape == TILE[1::-1] and field.dtype == np.float32
    assert (folder / "tiles-flatfield" / "flatfield.png").is_file()
    coefficients = json.loads((folder / "tiles-intensity.json").read_text())["tiles"]
    assert len(coefficients) == 64
    before, after = relative_error(plain, truth), relative_error(even, truth)
    assert after < before / 1.8, (before, after)   # measured 0.14 -> 0.07
    seams = seam_contrast(even, truth, positions, TILE)
    assert seams < 0.02 < seam_contrast(plain, truth, positions, TILE), seams
    assert digests(shaded["paths"]["tiles"]) == tiles_before


def test_matching_recovers_the_gains_given_the_true_fields(shaded):
    """The intensity step on its own: with S and T as the tiles were made (written out
    here), the recovered brightness 1 / gain is each tile's gain up to one scale."""
    folder = Path(shaded["paths"]["tiles_json"]).parent
    u = np.linspace(0, 1, TILE[0])
    field = 1 - 0.4 * ((2 * u[:, None] - 1) ** 2 + (2 * u[None, :] - 1) ** 2) / 2
    write_fields(str(folder / "true-fields"), Fields(field.astype(np.float32),
                                                     np.full(TILE[:2], 100.0, np.float32)), {})
    fused(shaded, "true-fields", flatfield=str(folder / "true-fields"), intensity="match")
    found = json.loads((folder / "tiles-intensity.json").read_text())["tiles"]
    recovered, truth = 1 / np.array([t["gain"] for t in found]), np.array(shaded["gains"])
    scale = (recovered * truth).sum() / (recovered * recovered).sum()
    assert np.abs(scale * recovered / truth - 1).max() < 0.05


def test_estimated_corrections_meet_the_goals_on_a_sample_without_a_trend(shaded_flat):
    """Issue 15's figures, reduced: S within 5 % of the true field, every recovered
    brightness within 5 %, the fused error 4 x lower, seams under 2 %. The sample has no
    brightness trend across the stage: a trend cannot be told from a tilt of S or a ramp
    of the gains by any estimator (docs/illumination.md), the `shaded` sample has one."""
    acq = shaded_flat
    truth = np.load(acq["paths"]["ground_truth"])
    positions = [tuple(int(v) for v in t["position"])
                 for t in json.loads(Path(acq["paths"]["tiles_true_json"]).read_text())]
    plain = fused(acq, "plain")
    even = fused(acq, "even", flatfield="auto", intensity="match")
    folder = Path(acq["paths"]["tiles_json"]).parent
    gain = tifffile.imread(folder / "tiles-flatfield" / "S.tif").astype(np.float64)
    u = np.linspace(0, 1, TILE[0])
    field = 1 - 0.4 * ((2 * u[:, None] - 1) ** 2 + (2 * u[None, :] - 1) ** 2) / 2
    scale = (gain * field).sum() / (gain * gain).sum()
    assert np.sqrt(np.mean((scale * gain - field) ** 2) / np.mean(field ** 2)) < 0.05
    found = json.loads((folder / "tiles-intensity.json").read_text())["tiles"]
    recovered, true_gains = 1 / np.array([t["gain"] for t in found]), np.array(acq["gains"])
    scale = (recovered * true_gains).sum() / (recovered * recovered).sum()
    assert np.abs(scale * recovered / true_gains - 1).max() < 0.05
    before, after = relative_error(plain, truth), relative_error(even, truth)
    assert after < before / 4, (before, after)
    assert seam_contrast(even, truth, positions, TILE) < 0.02


@pytest.mark.parametrize("blank", ["zeros", "background"])
def test_a_tile_without_structure_is_kept_as_it_is_and_spoils_no_other(tmp_path, blank):
    """Tile 4 (the centre of 3 x 3) blank or photon noise alone: its pairs relate noise,
    not brightness. On the trial's grids they had given it gain 357 (zeros) or 15.5 with
    a shared offset of 140 where it is 0 (background), and scaled every other tile to
    0.39 of its brightness (here, background: gain 0.49, offset 56, b 110.5, the others
    127 % apart; zeros only because b came out above 0). Now its pairs are not used, it
    keeps gain 1 and offset 0 and is named, and the others' brightness is recovered as
    without it."""
    acq = make_acquisition(tmp_path / "acq", grid=(3, 3, 1), tile=(64, 64, 16), jitter=0, seed=5,
                           falloff=0.0, gains=(0.6, 1.0), density=3.0, truth=False)
    centre = Path(acq["paths"]["tiles"]) / "tile-0004.tif"
    rng = np.random.default_rng(0)
    raw = np.zeros((16, 64, 64), np.uint16) if blank == "zeros" else \
        rng.poisson(150.0, (16, 64, 64)).astype(np.uint16)
    tifffile.imwrite(centre, raw, contiguous=True)
    out = fused(acq, "matched", intensity="match")
    found = json.loads((Path(acq["paths"]["tiles_json"]).parent / "tiles-intensity.json").read_text())
    gains = {t["index"]: (t["gain"], t["offset"]) for t in found["tiles"]}
    assert gains[4] == (1.0, 0.0) and found["unlinked_tiles"] == [4], found
    assert abs(found["shared_offset"]) < 10, found["shared_offset"]
    others = [i for i in range(9) if i != 4]
    recovered = 1 / np.array([gains[i][0] for i in others])
    truth = np.array(acq["gains"])[others]
    scale = (recovered * truth).sum() / (recovered * recovered).sum()
    assert np.abs(scale * recovered / truth - 1).max() < 0.05
    # the pull to gain 1 brings every tile to the geometric mean of the brightnesses
    # (0.39 of each tile's own brightness before)
    assert abs(scale / np.exp(np.log(truth).mean()) - 1) < 0.05, scale
    # the middle of tile 4, which no other tile covers, is its raw values (closest blending)
    x0, y0 = (int(v) for v in json.loads(Path(acq["paths"]["tiles_json"]).read_text())[4]["position"][:2])
    assert np.array_equal(out[:, y0 + 16:y0 + 48, x0 + 16:x0 + 48], raw[:, 16:48, 16:48])


def test_a_blank_vignetted_tile_leaves_the_offset_and_the_gains_alone(tmp_path):
    """Trial AC: a tile of background alone, vignetted like the others. What a flatfield
    leaves of the vignetting (here, without one: all of it) passed for structure in its
    overlaps, and its lines against its neighbours' blobs, slopes far from any brightness
    ratio, made the shared offset (155 here, where the dark level is 100) and spoiled
    every gain (34 % off). Now lines of slopes no brightness ratio of neighbours has are
    not used for it where others pin it."""
    acq = make_acquisition(tmp_path / "acq", grid=(5, 5, 1), tile=TILE, jitter=0, seed=3,
                           falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=3.0, waves=False,
                           truth=False)
    blank = 12   # the centre: four neighbours by a face, four by a corner
    level = acq["gains"][blank] * BACKGROUND * np.broadcast_to(illumination(TILE, 0.4)[None], TILE[::-1])
    tifffile.imwrite(Path(acq["paths"]["tiles"]) / f"tile-{blank:04d}.tif",
                     (np.random.default_rng(1).poisson(level) + 100).astype(np.uint16), contiguous=True)
    fused(acq, "matched", intensity="match")
    found = json.loads((Path(acq["paths"]["tiles_json"]).parent / "tiles-intensity.json").read_text())
    assert abs(found["shared_offset"] - 100) < 10, found["shared_offset"]   # measured 106
    others = [t for t in found["tiles"] if t["index"] != blank]
    recovered = 1 / np.array([t["gain"] for t in others])
    truth = np.array([acq["gains"][t["index"]] for t in others])
    scale = (recovered * truth).sum() / (recovered * recovered).sum()
    # 8 % without the blank tile too: the vignetting, uncorrected, is outside the model
    assert np.abs(scale * recovered / truth - 1).max() < 0.10, found["gain_range"]


@pytest.mark.parametrize("grid,dark", [((2, 1, 1), 100.0), ((2, 2, 1), 100.0), ((2, 1, 1), 1000.0)])
def test_a_tile_five_times_dimmer_is_matched(tmp_path, grid, dark):
    """Reviews of the blank-tile fix: a bare bound on the slope (4) had left the only lines
    that pin the offset out when one tile is truly 5 x dimmer (a laser that dropped): b
    came out 0 or 613 where the dark level is 100, and the brightness ratio 2.2 or 1.02;
    a rule on where a line puts b against the tiles' medians failed at a dark level of
    1000 (b 0, ratio 1.17)."""
    acq = make_acquisition(tmp_path / "acq", grid=grid, tile=TILE, jitter=0, seed=7, falloff=0.0,
                           dark=dark, gains=(1.0, 1.0), density=3.0, truth=False)
    last = len(acq["gains"]) - 1
    path = Path(acq["paths"]["tiles"]) / f"tile-{last:04d}.tif"
    dimmer = (tifffile.imread(path).astype(np.float64) - dark) * 0.2 + dark
    tifffile.imwrite(path, np.round(dimmer).astype(np.uint16), contiguous=True)
    fused(acq, "matched", intensity="match")
    found = json.loads((Path(acq["paths"]["tiles_json"]).parent / "tiles-intensity.json").read_text())
    gains = {t["index"]: t["gain"] for t in found["tiles"]}
    assert abs(found["shared_offset"] - dark) < 2, found["shared_offset"]   # measured ±0.4-1.5
    assert abs(gains[last] / gains[0] / 5 - 1) < 0.05, gains   # measured 4.95-5.18
    dim = [p for p in found["pair_results"] if last in (p["a"], p["b"])]
    assert dim and all(p["offset_line_used"] and p["slope"] != 1.0 for p in dim), dim


@pytest.mark.parametrize("blank", [False, True])
def test_equally_bright_tiles_keep_even_gains(tmp_path, blank):
    """Every tile equally bright, no flatfield: no line's slope is off 1 by more than its
    noise, yet they had made the shared offset (b 215 for a dark level of 100: a line
    through the pair's means with a slope off by noise crosses the diagonal near the
    means), and the gains came out 27 % off. A blank centre tile's one significant line
    (its vignetting taken for structure) then made b 244 and the gains 73 % off; that b
    is refused, as the pairs' medians disagree with it (and a warning says so)."""
    acq = make_acquisition(tmp_path / "acq", grid=(5, 5, 1), tile=TILE, jitter=0, seed=3,
                           falloff=0.4, dark=100.0, gains=(1.0, 1.0), density=3.0, waves=False,
                           truth=False)
    centre = 12
    if blank:
        level = BACKGROUND * np.broadcast_to(illumination(TILE, 0.4)[None], TILE[::-1])
        tifffile.imwrite(Path(acq["paths"]["tiles"]) / f"tile-{centre:04d}.tif",
                         (np.random.default_rng(1).poisson(level) + 100).astype(np.uint16), contiguous=True)
    folder = Path(acq["paths"]["tiles"]).parent
    raw = {"input": {"tiles": acq["paths"]["tiles_json"]},
           "output": {"uri": str(folder / "matched.zarr"), "format": "zarr2"},
           "fusion": {"intensity": "match"}}
    stream = io.StringIO()
    export(build_config(raw, source=str(folder / "job.toml")), LocalExecutor(), stream=stream)
    found = json.loads((folder / "tiles-intensity.json").read_text())
    assert found["shared_offset"] == 0.0 and found["pairs"]["dropped"] == 0, found["pairs"]
    gains = np.array([t["gain"] for t in found["tiles"] if t["index"] != centre or not blank])
    # the vignetting, uncorrected, is outside the model: measured 4.3-4.4 %
    assert np.abs(gains / np.exp(np.log(gains).mean()) - 1).max() < 0.06, found["gain_range"]
    warned = [line for line in stream.getvalue().splitlines() if "the pairs' lines put the shared offset" in line]
    assert bool(warned) == blank and (found["refused_offset"] is not None) == blank, stream.getvalue()
    if blank:
        assert found["refused_offset"]["offset"] > 200, found["refused_offset"]


def test_a_corrected_export_repeats_byte_for_byte(shaded):
    """A second run (a retry, a resume) computes the same bytes from the same fields."""
    folder = Path(shaded["paths"]["tiles_json"]).parent
    fused(shaded, "first", flatfield="auto", intensity="match")
    fused(shaded, "second", flatfield="auto", intensity="match")
    chunks = sorted(p.relative_to(folder / "first.zarr") for p in (folder / "first.zarr").rglob("*")
                    if p.is_file() and p.name[0].isdigit())
    assert chunks and all((folder / "first.zarr" / c).read_bytes() == (folder / "second.zarr" / c).read_bytes()
                          for c in chunks)


def job(tmp_path: Path, tiles: str, fusion: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(f'[input]\ntiles = "{tiles}"\n[output]\nuri = "{tmp_path / "out"}"\n'
                    f'[fusion]\n{fusion}\n[spark]\nmaster = "local[1]"\n')
    return path


def bad_fields(tmp_path: Path) -> str:
    folder = tmp_path / "wrong"
    folder.mkdir()
    for name in ("S.tif", "T.tif"):
        tifffile.imwrite(folder / name, np.ones((10, 12), np.float32))
    return f'flatfield = "{folder}"'


def too_many_planes(tmp_path: Path) -> str:
    folder = tmp_path / "deep"
    write_fields(str(folder), Fields(np.ones((9, 48, 48), np.float32), np.zeros((9, 48, 48), np.float32)), {})
    return f'flatfield = "{folder}"'


def unusable_fields(gain: np.ndarray, offset: np.ndarray):
    """A job setting naming a folder of fields of the tiles' shape with these values."""
    def setting(tmp_path: Path) -> str:
        write_fields(str(tmp_path / "unusable"), Fields(gain.astype(np.float32), offset.astype(np.float32)), {})
        return f'flatfield = "{tmp_path / "unusable"}"'
    return setting


def with_one(value: float, at=(5, 7)) -> np.ndarray:
    field = np.ones((48, 48))
    field[at] = value
    return field


@pytest.mark.parametrize("setting, says", [
    (unusable_fields(np.zeros((48, 48)), np.zeros((48, 48))), "S.tif is not usable: its mean is 0"),
    (unusable_fields(with_one(np.nan), np.zeros((48, 48))), "S.tif is not usable: 1 of its 2304 values"),
    (unusable_fields(with_one(0.05), np.zeros((48, 48))), "S.tif is not usable: its S falls to 0.050"),
    (unusable_fields(np.ones((48, 48)), with_one(np.inf)), "T.tif is not usable: 1 of its 2304 values"),
    (bad_fields, "12 x 10 pixels (x, y) but the tiles are 48 x 48"),
    (too_many_planes, "holds 9 planes but the tiles have 8 slices"),
    (lambda p: f'flatfield = "{p / "nowhere"}"', "flatfield folder"),
])
@pytest.mark.parametrize("intensity", ["none", "match"])
def test_bad_fields_are_one_line_and_nothing_is_written(shaded, tmp_path, capsys, setting, says,
                                                        intensity):
    """With intensity matching on, the fields are checked before the pairs are measured
    through them (they were read on the executors, which failed without a cause)."""
    path = job(tmp_path, shaded["paths"]["tiles_json"], f'{setting(tmp_path)}\nintensity = "{intensity}"')
    assert export_main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists()


def test_too_few_tiles_to_estimate_is_one_line_and_nothing_is_written(tmp_path, capsys):
    acq = make_acquisition(tmp_path / "acq", grid=(2, 2, 1), tile=(32, 32, 4), jitter=0,
                           seed=1, falloff=0.4, truth=False)
    path = job(tmp_path, acq["paths"]["tiles_json"], 'flatfield = "auto"')
    assert export_main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 tiles, but a flatfield needs at least 6" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "acq" / "tiles-flatfield").exists()


def test_a_field_that_follows_the_sample_is_refused_and_nothing_is_written(tmp_path):
    """Nine sparse tiles (density 4) with the shading of `shaded`: their pixel statistics
    follow the blobs more than the vignetting, and the fit gave S down to -0.21, which the
    correction then divided by (pixels from -1744 to 1478). Refused in one line before any
    field is written."""
    acq = make_acquisition(tmp_path / "acq", grid=(3, 3, 1), tile=(128, 128, 32), seed=0,
                           falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=4, truth=False)
    path = job(tmp_path, acq["paths"]["tiles_json"], 'flatfield = "auto"')
    with pytest.raises(FlatfieldError) as refused:
        estimate_flatfield(load_job(path), LocalExecutor(), io.StringIO())
    assert "is not usable: its S falls to -0." in str(refused.value), refused.value
    assert "statistics follow the sample" in str(refused.value)
    assert "\n" not in str(refused.value) and "nothing was written" in str(refused.value)
    assert not (tmp_path / "acq" / "tiles-flatfield").exists()


def test_an_offset_above_the_darkest_values_is_refused_and_nothing_is_written(tmp_path):
    """Sixteen tiles of 64 x 64 x 16 (dark level 100): the fit put one offset T at 224,
    above a quarter of the raw voxels, which the correction then took below 0 and the
    export clipped to 0. raw = S I + T with I >= 0 cannot lie below T beyond its noise:
    refused in one line before any field is written."""
    acq = make_acquisition(tmp_path / "acq", grid=(4, 4, 1), tile=(64, 64, 16), jitter=0, seed=1,
                           falloff=0.3, dark=100.0, gains=(0.7, 1.0), truth=False)
    path = job(tmp_path, acq["paths"]["tiles_json"], 'flatfield = "auto"')
    with pytest.raises(FlatfieldError) as refused:
        estimate_flatfield(load_job(path), LocalExecutor(), io.StringIO())
    message = str(refused.value)
    assert "is not usable: its offset T (" in message and "nothing was written" in message, message
    assert "the tiles' darkest values do not pin the offset down" in message, message
    offset = float(message.split("its offset T (")[1].split(")")[0])
    raw = np.stack([tifffile.imread(p) for p in sorted(Path(acq["paths"]["tiles"]).glob("*.tif"))])
    assert np.mean(raw < offset) > 0.05   # judged by the raw voxels themselves
    assert "\n" not in message and not (tmp_path / "acq" / "tiles-flatfield").exists()


def test_the_flatfield_job_estimates_on_spark(shaded, tmp_path, spark, capsys):
    """Executors (the shared local[2] session) reduce the tiles; the driver writes the
    folder fusion.flatfield names. jobs/flatfield.py is the console script's main, and a
    bad job is one line, exit 2."""
    target = tmp_path / "fields"
    path = job(tmp_path, shaded["paths"]["tiles_json"], f'flatfield = "{target}"')
    run = estimate_flatfield(load_job(path), SparkExecutor(spark=spark), io.StringIO())
    gain = tifffile.imread(target / "S.tif")
    assert run.folders == (str(target),) and run.tiles == 64
    assert gain.shape == (48, 48) and abs(float(gain.mean()) - 1) < 1e-3
    local = tmp_path / "local"
    estimate_flatfield(load_job(path, [f'fusion.flatfield="{local}"']), LocalExecutor(), io.StringIO())
    assert np.array_equal(tifffile.imread(local / "S.tif"), gain)   # the sums do not depend on the split
    shown = subprocess.run([sys.executable, str(ROOT / "jobs" / "flatfield.py"), "--help"],
                           capture_output=True, text=True, check=True)
    assert shown.stdout.startswith("usage: tile-flatfield")
    assert flatfield_main([str(tmp_path / "missing.toml")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_intensities_are_matched_at_the_stitched_positions(tmp_path):
    """With [stitching] enabled the pairs are measured after registration, from the
    refined tile JSON, and the export reads the coefficients written beside it."""
    acq = make_acquisition(tmp_path / "acq", grid=(3, 3, 1), tile=(64, 64, 12), jitter=4,
                           seed=2, falloff=0.3, dark=50.0, gains=(0.6, 1.0), density=10.0,
                           truth=False)
    # no flatfield: nine tiles of 64 x 64 estimate none worth applying (S down to -0.09,
    # refused: test_a_field_that_follows_the_sample_is_refused_and_nothing_is_written)
    raw = {"input": {"tiles": acq["paths"]["tiles_json"]},
           "output": {"uri": str(tmp_path / "out"), "chunks": [64, 64, 12]},
           "fusion": {"intensity": "match"},
           "stitching": {"enabled": True, "search": 8, "downsample": [2, 2, 1]}}
    export(build_config(raw, source=str(tmp_path / "job.toml")), LocalExecutor(), stream=io.StringIO())
    coefficients = json.loads((tmp_path / "acq" / "tiles-final-intensity.json").read_text())
    assert len(coefficients["tiles"]) == 9 and coefficients["pairs"]["used"] > 0
    assert (tmp_path / "out" / "attributes.json").is_file()


def test_the_memory_estimate_counts_the_corrected_copy(shaded):
    """A corrected read holds a float32 copy of the tile region a block reads: 4 more
    bytes per voxel of the (whole) block, in the plan and in the dry run; and the process
    holds the fields (S and T, float32)."""
    from pipelines.plan import make_plan
    from pipelines.plan.dryrun import dry_run
    folder = Path(shaded["paths"]["tiles_json"]).parent
    raw = {"input": {"tiles": shaded["paths"]["tiles_json"]},
           "output": {"uri": str(folder / "memory.zarr"), "chunks": [32, 32, 8], "block": [1, 1, 1]}}
    plain = build_config(raw, source=str(folder / "job.toml"))
    corrected = build_config({**raw, "fusion": {"flatfield": "auto"}}, source=str(folder / "job.toml"))
    if not (folder / "tiles-flatfield" / "S.tif").exists():   # the plan checks the fields
        fused(shaded, "fields", flatfield="auto")
    added = 4 * 32 * 32 * 8 + 2 * 4 * 48 * 48   # the copy, and S and T as read once
    assert make_plan(corrected).task_memory - make_plan(plain).task_memory == added
    assert dry_run(corrected).task_memory - dry_run(plain).task_memory == added
    # [flatfield] enabled without fusion.flatfield applies the fields it estimates beside
    # the tiles: the dry run counted them but not the copy (defect found by a review)
    estimated = build_config({**raw, "flatfield": {"enabled": True}}, source=str(folder / "job.toml"))
    assert dry_run(estimated).task_memory == make_plan(corrected).task_memory


def test_the_fingerprint_holds_the_fields_and_coefficients(shaded, tmp_path):
    """A resume continues only a run of the same inputs: other fields (same folder, other
    bytes) or no correction at all make another fingerprint."""
    from pipelines.commit.records import fingerprint
    from pipelines.plan import make_plan
    target = tmp_path / "fields"
    write_fields(str(target), Fields(np.ones((48, 48), np.float32), np.zeros((48, 48), np.float32)), {})
    raw = {"input": {"tiles": shaded["paths"]["tiles_json"]}, "output": {"uri": str(tmp_path / "o")}}
    plain = fingerprint(make_plan(build_config(raw)))
    config = build_config({**raw, "fusion": {"flatfield": str(target)}})
    first = fingerprint(make_plan(config))
    write_fields(str(target), Fields(np.full((48, 48), 0.9, np.float32), np.zeros((48, 48), np.float32)), {})
    assert len({plain, first, fingerprint(make_plan(config))}) == 3


def test_fields_per_slice_are_estimated_and_applied(shaded, tmp_path):
    """[flatfield] per_slice = true: S.tif and T.tif hold one plane per group of slices
    (8 slices: one per slice), the export applies them slice by slice, and a second run
    writes the same bytes."""
    target = tmp_path / "deep"
    truth = np.load(shaded["paths"]["ground_truth"])
    chunks = {}
    for name in ("first", "second"):
        raw = {"input": {"tiles": shaded["paths"]["tiles_json"]},
               "output": {"uri": str(tmp_path / f"{name}.zarr"), "format": "zarr2", "chunks": [64, 64, 8]},
               "fusion": {"flatfield": str(target), "blending": "closest"},
               "flatfield": {"enabled": True, "per_slice": True}}
        export(build_config(raw, source=str(tmp_path / "job.toml")), LocalExecutor(), stream=io.StringIO())
        chunks[name] = {p.relative_to(tmp_path / f"{name}.zarr"): p.read_bytes()
                        for p in (tmp_path / f"{name}.zarr").rglob("*") if p.name[0].isdigit() and p.is_file()}
    gain = tifffile.imread(target / "S.tif")
    assert gain.shape == tifffile.imread(target / "T.tif").shape == (8, 48, 48)
    assert json.loads((target / "flatfield.json").read_text())["slice_groups"] == 8
    u = np.linspace(0, 1, TILE[0])
    field = 1 - 0.4 * ((2 * u[:, None] - 1) ** 2 + (2 * u[None, :] - 1) ** 2) / 2
    for plane in gain.astype(np.float64):   # the phantom's vignetting is the same in every slice
        scale = (plane * field).sum() / (plane * plane).sum()
        assert np.sqrt(np.mean((scale * plane - field) ** 2) / np.mean(field ** 2)) < 0.05
    assert chunks["first"] and chunks["first"] == chunks["second"]
    even = np.asarray(zarr.open_array(str(tmp_path / "first.zarr" / "0"), mode="r")[...])
    assert relative_error(even, truth) < relative_error(fused(shaded, "uncorrected"), truth)


def test_flatfield_enabled_estimates_again_before_fusing(shaded, tmp_path):
    """[flatfield] enabled = true: the fields are estimated before the export even when
    they exist (here into the folder fusion.flatfield names), then applied."""
    target = tmp_path / "fresh"
    write_fields(str(target), Fields(np.ones((48, 48), np.float32), np.zeros((48, 48), np.float32)), {})
    raw = {"input": {"tiles": shaded["paths"]["tiles_json"]},
           "output": {"uri": str(tmp_path / "out"), "chunks": [64, 64, 8]},
           "fusion": {"flatfield": str(target)}, "flatfield": {"enabled": True}}
    export(build_config(raw, source=str(tmp_path / "job.toml")), LocalExecutor(), stream=io.StringIO())
    gain = tifffile.imread(target / "S.tif")
    assert gain.min() < 0.85 < 1.1 < gain.max()   # the vignetting, not the flat field written first
    assert (tmp_path / "out" / "attributes.json").is_file()   # the N5 output is committed


def test_fields_and_coefficients_of_tiles_in_a_bucket_are_kept_in_the_bucket(s3_bucket, tmp_path, capsys):
    """Tiles and tile JSON in S3 (moto on loopback): "auto" estimates the fields into
    s3://…/tiles-flatfield/ and the coefficients into s3://…/tiles-intensity.json, the
    export reads them from there, and its chunks are the bytes the same export of a local
    copy of the acquisition writes. A named folder that is not in the bucket is one line."""
    import boto3
    endpoint, bucket = s3_bucket
    # 8 x 8 tiles: nine gave an offset above the tiles' darkest values, which is refused
    acq = make_acquisition(tmp_path / "acq", grid=(8, 8, 1), tile=(32, 32, 4), jitter=0, seed=2,
                           falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=10.0, truth=False)
    client = boto3.client("s3", endpoint_url=endpoint)
    source = Path(acq["paths"]["tiles_json"])
    for tile in json.loads(source.read_text()):
        client.upload_file(str(source.parent / tile["file"]), bucket, f"acq/{tile['file']}")
    client.upload_file(str(source), bucket, "acq/tiles.json")
    volumes = {}
    for name, tiles in (("bucket", f"s3://{bucket}/acq/tiles.json"), ("local", str(source))):
        raw = {"input": {"tiles": tiles}, "s3": {"endpoint_url": endpoint},
               "output": {"uri": str(tmp_path / f"{name}.zarr"), "format": "zarr2", "chunks": [32, 32, 4]},
               "fusion": {"flatfield": "auto", "intensity": "match"}}
        export(build_config(raw, source=str(tmp_path / "job.toml")), LocalExecutor(), stream=io.StringIO())
        volumes[name] = {p.relative_to(tmp_path / f"{name}.zarr"): p.read_bytes()
                         for p in (tmp_path / f"{name}.zarr").rglob("*") if p.is_file() and p.name[0].isdigit()}
    kept = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="acq/tiles-")["Contents"]}
    assert kept == {f"acq/tiles-flatfield/{n}" for n in ("S.tif", "T.tif", "flatfield.json", "flatfield.png")} \
        | {"acq/tiles-intensity.json"}
    assert volumes["bucket"] and volumes["bucket"] == volumes["local"]
    job_file = job(tmp_path, f"s3://{bucket}/acq/tiles.json", f'flatfield = "s3://{bucket}/nowhere"')
    capsys.readouterr()
    assert export_main([str(job_file), "--set", f"s3.endpoint_url={endpoint}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"flatfield folder s3://{bucket}/nowhere not found" in err[0], err
    assert not (tmp_path / "out").exists()
