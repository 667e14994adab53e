"""Synthetic acquisitions: tile JSON, exactness against ground truth, noise, falloff, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from pipelines.geometry import Box, to_zyx
from pipelines.testing.synthetic import illumination, make_acquisition, phantom
from pipelines.tiles.readers import check_tile_file, read_region
from pipelines.tiles.tilejson import read_tile_json
from tests.conftest import ROOT

SMALL = dict(grid=(2, 2, 1), tile=(48, 40, 12), overlap=0.1)
CLEAN = dict(jitter=0.0, noise=False, falloff=0.0)


def whole(tile):
    return Box((0, 0, 0), tile.size)


@pytest.mark.parametrize("tile_type", ["GRAY8", "GRAY16", "GRAY32"])
def test_tile_json_reads_back_and_files_match(tmp_path, tile_type):
    result = make_acquisition(tmp_path, **SMALL, tile_type=tile_type, resolution=(0.5, 0.5, 3.0))
    tiles = read_tile_json(tmp_path / "tiles.json")
    assert len(tiles) == 4 and [t.index for t in tiles] == [0, 1, 2, 3]
    for t in tiles:
        check_tile_file(t)
        assert t.size == (48, 40, 12) and t.type == tile_type
        assert t.pixel_resolution == (0.5, 0.5, 3.0)
    raw = json.loads((tmp_path / "tiles.json").read_text())
    assert [e["file"] for e in raw] == [f"tiles/tile-{n:04d}.tif" for n in range(4)]
    true = [t.position for t in read_tile_json(tmp_path / "tiles-true.json")]
    assert true == [(0, 0, 0), (43, 0, 0), (0, 36, 0), (43, 36, 0)]  # x fastest, step 43, 36
    acq = json.loads((tmp_path / "acquisition.json").read_text())
    assert acq["ground_truth_shape"] == [91, 76, 12] and acq["type"] == tile_type
    assert np.load(tmp_path / "ground-truth.npy", mmap_mode="r").shape == (12, 76, 91)
    assert result["paths"]["ground_truth"] == str((tmp_path / "ground-truth.npy").resolve())


@pytest.mark.parametrize("tile_type", ["GRAY8", "GRAY16", "GRAY32"])
def test_clean_tiles_equal_ground_truth_exactly(tmp_path, tile_type):
    make_acquisition(tmp_path, **SMALL, **CLEAN, tile_type=tile_type)
    truth = np.load(tmp_path / "ground-truth.npy")
    assert truth.dtype == np.dtype({"GRAY8": "u1", "GRAY16": "u2", "GRAY32": "f4"}[tile_type])
    assert truth.std() > 1  # blobs on a background, not a constant
    stage = read_tile_json(tmp_path / "tiles.json")
    true = read_tile_json(tmp_path / "tiles-true.json")
    for s, t in zip(stage, true):
        assert s.position == t.position
        np.testing.assert_array_equal(read_region(t, whole(t)), truth[t.box.slices_zyx()])


def test_jitter_moves_stage_positions_within_bounds(tmp_path):
    make_acquisition(tmp_path, **SMALL, jitter=3.0, noise=False)
    stage = read_tile_json(tmp_path / "tiles.json")
    true = read_tile_json(tmp_path / "tiles-true.json")
    offsets = np.array([s.position for s in stage]) - np.array([t.position for t in true])
    assert np.abs(offsets).max() <= 3.0 + 1e-9
    assert np.count_nonzero(offsets) > 6
    assert all(v == round(v, 2) for s in stage for v in s.position)
    assert all(v == int(v) for t in true for v in t.position)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        make_acquisition(tmp_path / name, **SMALL, seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 8
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    for f in ("tiles/tile-0000.tif", "ground-truth.npy", "tiles.json"):
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes(), f


def test_a_flat_background_keeps_the_blobs_and_fibres():
    """waves=False removes the slow background variation and nothing else: the difference
    from the usual phantom is a sum of one function per axis (the cosines), and where no
    blob or fibre reaches, the flat phantom is the one background level."""
    volume = (60, 50, 20)
    box = Box((0, 0, 0), volume)
    waves, flat = phantom(box, 3, volume), phantom(box, 3, volume, waves=False)
    diff = (waves - flat).astype(np.float64)
    assert np.ptp(diff) > 20
    separable = (diff.mean(axis=(1, 2))[:, None, None] + diff.mean(axis=(0, 2))[None, :, None]
                 + diff.mean(axis=(0, 1))[None, None, :] - 2 * diff.mean())
    np.testing.assert_allclose(diff, separable, atol=0.05)
    assert flat.min() == 200.0 and np.mean(flat == 200.0) > 0.05 and flat.max() > 500
    assert waves.min() < 190


def test_phantom_is_independent_of_the_rendered_box():
    volume = (60, 50, 20)
    big = phantom(Box((-6, -4, -3), (66, 55, 24)), 3, volume)
    assert big.dtype == np.float32 and big.shape == (27, 59, 72)
    assert big.max() > 500 and big.min() > 50  # blobs above a positive background
    for start, stop in (((13, 7, 3), (41, 33, 15)), ((-6, -4, -3), (5, 6, 2)), ((59, 49, 19), (61, 51, 21))):
        crop = Box(start, stop).relative_to((-6, -4, -3)).slices_zyx()
        np.testing.assert_array_equal(phantom(Box(start, stop), 3, volume), big[crop])
    assert not np.array_equal(phantom(Box((0, 0, 0), volume), 4, volume),
                              big[Box((0, 0, 0), volume).relative_to((-6, -4, -3)).slices_zyx()])


def test_noise_is_poisson_around_the_truth(tmp_path):
    make_acquisition(tmp_path, grid=(1, 1, 1), tile=(64, 64, 16), jitter=0.0, falloff=0.0, seed=2)
    tile = read_tile_json(tmp_path / "tiles.json").tiles[0]
    truth = np.load(tmp_path / "ground-truth.npy").astype(float)
    diff = read_region(tile, whole(tile)).astype(float) - truth
    assert abs(diff.mean()) < 0.5
    assert 0.9 < diff.var() / truth.mean() < 1.1


def test_falloff_darkens_corners_by_the_illumination_profile(tmp_path):
    make_acquisition(tmp_path, grid=(1, 1, 1), tile=(33, 25, 4), jitter=0.0, noise=False,
                     falloff=0.3, tile_type="GRAY32")
    tile = read_tile_json(tmp_path / "tiles.json").tiles[0]
    ratio = read_region(tile, whole(tile)) / np.load(tmp_path / "ground-truth.npy")
    assert ratio[:, 12, 16] == pytest.approx(1.0, rel=1e-6)  # centre pixel
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert ratio[:, y, x] == pytest.approx(0.7, rel=1e-6)
    np.testing.assert_allclose(ratio, np.broadcast_to(illumination((33, 25), 0.3), ratio.shape),
                               rtol=1e-6)
    assert ratio[:, 0, 16] == pytest.approx(0.85, rel=1e-6)  # edge centre: one axis at full falloff


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.testing.synthetic", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_writes_the_acquisition(tmp_path):
    """Without ground-truth.npy unless asked (--truth): the demo never reads its 1 GB."""
    done = run_cli(tmp_path, "--grid", "2x1x1", "--tile", "32x24x6", "--seed", "1",
                   "--type", "GRAY8", "--resolution", "1x1x4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("done: ")
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir()) == ["tile-0000.tif", "tile-0001.tif"]
    assert not (tmp_path / "ground-truth.npy").exists()
    acq = json.loads((tmp_path / "acquisition.json").read_text())
    assert acq["grid"] == [2, 1, 1] and acq["resolution"] == [1.0, 1.0, 4.0] and acq["seed"] == 1
    assert tifffile.imread(tmp_path / "tiles" / "tile-0001.tif").shape == to_zyx((32, 24, 6))
    asked = run_cli(tmp_path / "asked", "--grid", "2x1x1", "--tile", "32x24x6", "--truth")
    assert asked.returncode == 0, asked.stderr
    shape = json.loads((tmp_path / "asked" / "acquisition.json").read_text())["ground_truth_shape"]
    assert np.load(tmp_path / "asked" / "ground-truth.npy").shape == to_zyx(shape)


@pytest.mark.parametrize("args", [
    ["--grid", "3x3"], ["--grid", "3x0x2"], ["--tile", "5x5x2.5"], ["--resolution", "1x-1x2"],
    ["--overlap", "0.95"], ["--overlap", "-0.1"], ["--jitter", "-1"],
])
def test_cli_rejects_bad_arguments_with_one_line(tmp_path, args):
    done = run_cli(tmp_path / "out", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "error" in done.stderr
    assert args[0].lstrip("-") in done.stderr
    assert not (tmp_path / "out").exists()


def test_2d_tiles_are_not_jittered_in_z(tmp_path):
    """Tiles of one slice stay in one plane: jittered in z, no two of them overlapped."""
    paths = make_acquisition(tmp_path, grid=(2, 2, 1), tile=(24, 24, 1), jitter=5, seed=1,
                             truth=False)["paths"]
    stage = read_tile_json(paths["tiles_json"])
    assert [t.position[2] for t in stage] == [0.0] * 4
    assert any(t.position[0] % 1 for t in stage)    # x and y are still jittered
