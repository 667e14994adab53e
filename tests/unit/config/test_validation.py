"""Each bad input gives one clear line naming the file and field, exit code 2, nothing written.

These run `jobs/export.py`'s main() in-process: every check happens before Spark starts.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipelines.testing.synthetic import make_acquisition
from tests.conftest import ROOT, write_job


def load_export_job():
    spec = importlib.util.spec_from_file_location("export_job", ROOT / "jobs/export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_job = load_export_job()


@pytest.fixture
def acquisition(tmp_path) -> Path:
    make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(24, 20, 6), overlap=0.25,
                     jitter=0, seed=1, truth=False)
    return tmp_path / "acq"


def run(tmp_path: Path, acq: Path, *overrides: str, extra: str = "") -> tuple[int, str]:
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), "out/volume", extra)
    return export_job.main([str(job), *overrides])


def check_refused(capsys, tmp_path, code, *expected):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not (tmp_path / "out").exists(), "nothing may be written"


def edit_tiles(acq: Path, change) -> None:
    doc = json.loads((acq / "tiles.json").read_text())
    change(doc)
    (acq / "tiles.json").write_text(json.dumps(doc))


def test_missing_tile_file(tmp_path, acquisition, capsys):
    (acquisition / "tiles/tile-0001.tif").unlink()
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, f"{acquisition / 'tiles.json'}: tile index 1:",
                  "tile-0001.tif", "tile file not found")


def test_unreadable_tile_file(tmp_path, acquisition, capsys):
    (acquisition / "tiles/tile-0000.tif").write_bytes(b"this is not a TIFF file" * 10)
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tile-0000.tif", "cannot read as TIFF")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tile_file(tmp_path, acquisition, capsys, compression):
    path = acquisition / "tiles/tile-0001.tif"
    if compression:
        tifffile.imwrite(path, tifffile.imread(path), compression=compression, photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tile-0001.tif", "truncated")


def test_a_tile_cut_inside_its_headers_is_one_line_in_a_process(tmp_path, acquisition):
    """Cut before its pages' headers end, tifffile also logs what it found ("invalid page
    offset"); a job without logging configured printed that line before its own. Run as
    a user runs it (pytest's log capture would hide the difference in-process)."""
    path = acquisition / "tiles/tile-0001.tif"
    path.write_bytes(path.read_bytes()[:300])
    job = write_job(tmp_path / "job.toml", str(acquisition / "tiles.json"), "out/volume")
    run = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("error: ") and "tile-0001.tif" in lines[0], lines[0]
    assert not (tmp_path / "out").exists(), "nothing may be written"


def test_json_size_differs_from_file_shape(tmp_path, acquisition, capsys):
    edit_tiles(acquisition, lambda doc: doc[1].update(size=[24, 20, 7]))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tile-0001.tif", "field 'size' is [24, 20, 7]",
                  "file holds [24, 20, 6]")


def test_file_type_differs_from_json_type(tmp_path, acquisition, capsys):
    tifffile.imwrite(acquisition / "tiles/tile-0001.tif", np.zeros((6, 20, 24), "uint8"))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, f"{acquisition / 'tiles.json'}: {acquisition / 'tiles/tile-0001.tif'}: "
                  "tile 1 field 'type' is GRAY16", "file holds uint8")   # the index once (trial AI)


def test_tiles_of_different_types(tmp_path, acquisition, capsys):
    edit_tiles(acquisition, lambda doc: doc[1].update(type="GRAY8"))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tiles.json", "tile 1 has field 'type' GRAY8", "GRAY16")


def test_tile_json_not_json(tmp_path, acquisition, capsys):
    (acquisition / "tiles.json").write_text("[{'index': 0,")
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tiles.json", "not valid JSON")


def test_tile_json_missing_field(tmp_path, acquisition, capsys):
    edit_tiles(acquisition, lambda doc: doc[0].pop("position"))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tiles.json: tile 0", "missing field 'position'")


def test_tile_json_negative_size(tmp_path, acquisition, capsys):
    edit_tiles(acquisition, lambda doc: doc[0].update(size=[24, -20, 6]))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tile 0", "field 'size' must be positive")


def test_unknown_format(tmp_path, acquisition, capsys):
    code = run(tmp_path, acquisition, "--set", "output.format=zarr")
    check_refused(capsys, tmp_path, code, "output.format", "'zarr'", "did you mean 'zarr3'")


def test_unknown_codec(tmp_path, acquisition, capsys):
    code = run(tmp_path, acquisition, "--set", "output.codec=snappy")
    check_refused(capsys, tmp_path, code, "output.codec", "unknown codec 'snappy'")


@pytest.mark.parametrize("key", ["output.chunks", "output.block"])
def test_non_positive_chunk_or_block_size(tmp_path, acquisition, capsys, key):
    code = run(tmp_path, acquisition, "--set", f"{key}=[16, 0, 8]")
    check_refused(capsys, tmp_path, code, key, "expected three positive integers")


def test_unknown_key_names_the_closest(tmp_path, acquisition, capsys):
    code = run(tmp_path, acquisition, extra="codex = 'zstd'")
    check_refused(capsys, tmp_path, code, "unknown key output.codex", "did you mean 'output.codec'")


@pytest.mark.parametrize("override, expected", [
    ("output.chunk=[8,8,8]", "error: --set output.chunk: unknown key output.chunk; did you mean 'output.chunks'"),
    ("ouput.chunks=[8,8,8]", "error: --set ouput.chunks: unknown section [ouput]; did you mean [output]?"),
])
def test_a_set_typo_is_blamed_on_the_set(tmp_path, acquisition, capsys, override, expected):
    code = run(tmp_path, acquisition, "--set", override)
    check_refused(capsys, tmp_path, code, expected)   # the line starts there, not at job.toml


def test_output_not_writable(tmp_path, acquisition, capsys):
    (tmp_path / "out").write_text("a file where the output folder should be")
    code = run(tmp_path, acquisition)
    err = capsys.readouterr().err
    assert code == 2 and "output.uri" in err and "is not a folder" in err
    assert (tmp_path / "out").read_text().startswith("a file")


@pytest.mark.parametrize("fmt,root", [("n5", "attributes.json"), ("zarr3", "zarr.json"),
                                      ("zarr2", ".zgroup"), ("n5", "zarr.json")])
def test_output_already_holds_a_committed_dataset(tmp_path, acquisition, capsys, fmt, root):
    existing = tmp_path / "out/volume"
    existing.mkdir(parents=True)
    (existing / root).write_text('{"n5": "2.5.1"}' if fmt == "n5" else '{"zarr_format": 3}')
    before = sorted(p.name for p in existing.rglob("*"))
    code = run(tmp_path, acquisition, "--set", f"output.format={fmt}")
    err = capsys.readouterr().err
    # trial J: --overwrite was suggested, and then refused (no job record: not ours)
    assert code == 2 and "already holds a dataset that no job record of this pipeline vouches for" in err and root in err
    assert "--overwrite" not in err
    assert sorted(p.name for p in existing.rglob("*")) == before


def test_block_too_big_for_task_memory(tmp_path, acquisition, capsys):
    code = run(tmp_path, acquisition, "--set", "limits.task_memory=1k")
    check_refused(capsys, tmp_path, code, "block [0, 0, 0]", "limits.task_memory")


def test_missing_java_is_one_line_before_anything_is_written(tmp_path, acquisition, capsys, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "Java 17 or newer is needed")


@pytest.mark.parametrize("override", [
    "output.uri=s3://AKIAEXAMPLE:SECRETKEY123@bkt/vol",
    "output.uri=http://AKIAEXAMPLE:SECRETKEY123@host/vol",
    "input.tiles=s3://AKIAEXAMPLE:SECRETKEY123@bkt/acq/tiles.json",
    "s3.endpoint_url=http://AKIAEXAMPLE:SECRETKEY123@minio:9000",
])
def test_credentials_in_a_uri_are_refused_without_repeating_them(tmp_path, acquisition, capsys, override):
    code = run(tmp_path, acquisition, "--set", override)
    err = capsys.readouterr().err
    assert code == 2 and "credentials in a URI" in err, err
    assert "SECRETKEY123" not in err and "AKIAEXAMPLE" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("position", ["[1e300, 0, 0]", "[0, -3e12, 0]"])
def test_a_tile_position_beyond_what_the_output_can_address_is_refused(tmp_path, acquisition, capsys, position):
    edit_tiles(acquisition, lambda doc: doc[1].__setitem__("position", json.loads(position)))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, "tile 1", "field 'position'", "2^40")


# Every number validation reads, out of bounds: (--set override, what the one line names).
# Each must be refused before anything runs: not finite, negative where impossible, beyond
# what the output format can address, or beyond what a plan can hold.
OUT_OF_BOUNDS_SETTINGS = [
    ("output.chunks=[2147483648,16,8]", "output.chunks"),   # N5 stores a block size in 32 bits
    ("output.chunks=[9223372036854775807,1,1]", "output.chunks"),
    ("output.block=[1,1,4294967296]", "output.block"),
    ("output.shard=[2147483648,1,1]", "output.shard"),
    ("output.levels=1000000", "output.levels"),
    ('output.codec={name="zstd", level=nan}', "output.codec.level"),
    ('output.codec={name="blosc", blocksize=99999999999999}', "output.codec.blocksize"),
    ("fusion.voxel_size=nan", "fusion.voxel_size"),
    ("fusion.voxel_size=inf", "fusion.voxel_size"),
    ("fusion.voxel_size=1e-7", "fusion.voxel_size"),
    ("fusion.voxel_size=1e-6", "fusion.voxel_size"),   # valid alone; the plan cannot hold it
    ("fusion.bounding_box={min=[0,0,0], max=[inf,10,10]}", "fusion.bounding_box.max"),
    ('limits.task_memory="0.1"', "limits.task_memory"),   # 0 bytes once rounded
    ('limits.task_memory="2000000t"', "limits.task_memory"),
    ('limits.tile_cache="0.5"', "limits.tile_cache"),
    ("limits.checkpoint_seconds=nan", "limits.checkpoint_seconds"),
    ("limits.checkpoint_seconds=1e300", "limits.checkpoint_seconds"),
    ("debug.task_delay=-1", "debug.task_delay"),
    ("debug.task_delay=inf", "debug.task_delay"),
    ("debug.task_delay=1e300", "debug.task_delay"),   # time.sleep overflows in every task
    ("debug.fail_blocks=[[4294967296,0,0]]", "debug.fail_blocks"),
    ("s3.max_attempts=100000000000", "s3.max_attempts"),
    ("s3.request_timeout=nan", "s3.request_timeout"),
    ('s3.part_size="6GiB"', "s3.part_size"),   # S3 refuses parts above 5 GiB
    ('s3.multipart_threshold="8GiB"', "s3.multipart_threshold"),   # and single PUTs
    ('s3.multipart_threshold="0.5"', "s3.multipart_threshold"),
    ("stitching.search=1000000000000000", "stitching.search"),
    ("stitching.downsample=[4294967296,1,1]", "stitching.downsample"),
    ("stitching.min_overlap=[1,1,-1]", "stitching.min_overlap"),
    ("stitching.max_residual=inf", "stitching.max_residual"),
    ("stitching.max_residual=nan", "stitching.max_residual"),
    ("stitching.min_score=nan", "stitching.min_score"),
    ("stitching.channel=4294967296", "stitching.channel"),
    ("spark.blocks_per_task=4294967296", "spark.blocks_per_task"),
    ("spark.blocks_per_task=2147483648", "spark.blocks_per_task"),   # 2^31: the bound is 2^31 − 1
]


@pytest.mark.parametrize("override, field", OUT_OF_BOUNDS_SETTINGS)
def test_every_setting_number_is_bounded(tmp_path, acquisition, capsys, override, field):
    code = run(tmp_path, acquisition, "--set", override)
    check_refused(capsys, tmp_path, code, field)


NAN, INF = float("nan"), float("inf")
# Tile JSON numbers out of bounds: (field, value given to tile 1, what the line names).
OUT_OF_BOUNDS_TILES = [
    ("position", [NAN, 0, 0], "field 'position'"),
    ("position", [0, -INF, 0], "field 'position'"),
    ("position", [1e12, 1e12, 1e12], "tiles' positions"),   # within ±2^40; no plan holds it
    ("size", [2**41, 20, 6], "field 'size'"),
    ("pixelResolution", [1e-300, 0.4, 2.0], "field 'pixelResolution'"),
    ("pixelResolution", [0.4, 1e300, 2.0], "field 'pixelResolution'"),
    ("pixelResolution", [0.4, 0.4, NAN], "field 'pixelResolution'"),
    ("index", 2**40, "field 'index'"),
    ("transform", [[1, 0, 0, 1e300], [0, 1, 0, 0], [0, 0, 1, 0]], "field 'transform'"),
    ("transform", [[NAN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "field 'transform'"),
]


@pytest.mark.parametrize("key, value, field", OUT_OF_BOUNDS_TILES)
def test_every_tile_json_number_is_bounded(tmp_path, acquisition, capsys, key, value, field):
    edit_tiles(acquisition, lambda doc: doc[1].__setitem__(key, value))
    code = run(tmp_path, acquisition)
    check_refused(capsys, tmp_path, code, field)


# BigStitcher project numbers out of bounds: (element path, new text, what the line names).
OUT_OF_BOUNDS_PROJECT = [
    ("SequenceDescription/ViewSetups/ViewSetup/size", f"{2**41} 64 48", "<size>"),
    ("SequenceDescription/ViewSetups/ViewSetup/voxelSize/size", "1e-300 0.5 0.5", "<voxelSize>"),
    ("SequenceDescription/ViewSetups/ViewSetup/voxelSize/size", "0.5 inf 0.5", "<voxelSize>"),
    ("SequenceDescription/ViewSetups/ViewSetup/id", str(2**32), "ViewSetup id"),
    ("ViewRegistrations/ViewRegistration/ViewTransform/affine", "1e300 0 0 0 0 1 0 0 0 0 1 0",
     "beyond ±2^40"),
    ("ViewRegistrations/ViewRegistration/ViewTransform/affine", "nan 0 0 0 0 1 0 0 0 0 1 0",
     "<affine>"),
    ("SequenceDescription/Timepoints/integerpattern", "0-99999999999", "timepoint ids"),
    ("SequenceDescription/Timepoints/integerpattern", "0-200000", "timepoints"),
]


@pytest.mark.parametrize("path, text, field", OUT_OF_BOUNDS_PROJECT)
def test_every_bigstitcher_number_is_bounded(tmp_path, capsys, path, text, field):
    import xml.etree.ElementTree as ET

    from tests.bigstitcher_project import scenario, write_project
    xml = write_project(tmp_path / "acq", scenario("angles"), "tiff")
    tree = ET.parse(xml)
    tree.getroot().find(path).text = text
    tree.write(xml)
    job = write_job(tmp_path / "job.toml", str(xml), "out/volume")
    check_refused(capsys, tmp_path, export_job.main([str(job)]), field)


@pytest.mark.parametrize("override, expected", [
    ("flatfield.per_slice=yes", "flatfield.per_slice: expected true or false, found 'yes'"),
    ("flatfield.enabled=1", "flatfield.enabled: expected true or false, found 1"),
])
def test_flatfield_switches_are_true_or_false(tmp_path, acquisition, capsys, override, expected):
    code = run(tmp_path, acquisition, "--set", override)
    check_refused(capsys, tmp_path, code, expected)


def test_fields_per_slice_need_tiles_of_one_depth(tmp_path, capsys):
    """Planes per group of slices mean the same slices in every tile."""
    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(3, 2, 1), tile=(24, 20, 6), jitter=0, seed=1, truth=False)
    tifffile.imwrite(acq / "tiles/tile-0004.tif", tifffile.imread(acq / "tiles/tile-0004.tif")[:5])
    edit_tiles(acq, lambda doc: doc[4].update(size=[24, 20, 5]))
    code = run(tmp_path, acq, "--set", "fusion.flatfield=auto", "--set", "flatfield.per_slice=true")
    check_refused(capsys, tmp_path, code, "tiles of different depths [5, 6] cannot share fields per slice")
    assert not (acq / "tiles-flatfield").exists()


@pytest.mark.parametrize("dry", [False, True])
def test_a_bounding_box_outside_every_view_names_where_it_was_set(tmp_path, acquisition, capsys, dry):
    """Defect (audit): found only while planning, the line named neither the job file nor
    `--set`."""
    code = run(tmp_path, acquisition, "--set", "fusion.bounding_box={min=[500,500,500], max=[510,510,510]}",
               *(["--dry-run"] if dry else []))
    check_refused(capsys, tmp_path, code, "error: --set fusion.bounding_box = [[500.0, 500.0, 500.0], "
                                          "[510.0, 510.0, 510.0]]: holds no part of any view")
