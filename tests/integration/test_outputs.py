"""Every output viewers open: format × codec × dtype × sharding at every pyramid level,
OME-Zarr validated by ome-zarr-models and read by ome-zarr-py, n5-viewer and BigDataViewer.

The matrix runs the executor function in this process (stage by stage, then commit);
the layout tests at the end run on Spark.
"""

from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader
from ome_zarr_models import v04, v05

from pipelines.config import DTYPES, load_job
from pipelines.config.codecs import FORMAT_CODECS
from pipelines.driver import export
from pipelines.plan import make_plan
from pipelines.spark import SparkExecutor
from tests.conftest import write_job
from tests.pipeline_helpers import add_channel, export_local, fused_channel, reference_pyramid
from tests.readers import tensorstore_read, z5py_read, zarr2_read, zarr_read

MATRIX = [(fmt, codec, None) for fmt, codecs in FORMAT_CODECS.items() for codec in codecs]
MATRIX += [("zarr3", codec, [2, 1, 1]) for codec in FORMAT_CODECS["zarr3"]]
LEVEL_PATH = {"n5": "c0/s{}", "zarr2": "{}", "zarr3": "{}"}


def job_for(tmp_path, acquisition, fmt, codec, shard=None, dtype="", levels="'auto'",
            downsample="mean", tiles=None, extra="", overrides=()):
    lines = [f'format = "{fmt}"', f'codec = "{codec}"', f"levels = {levels}",
             f'downsample = "{downsample}"']
    lines += [f"shard = {shard}"] if shard else []
    lines += [f'dtype = "{dtype}"'] if dtype else []
    tiles = tiles or acquisition["paths"]["tiles_json"]
    job = write_job(tmp_path / "job.toml", "TILES", str(tmp_path / f"out.{fmt}"),
                    "\n".join(lines) + "\n" + extra)
    job.write_text(job.read_text().replace('"TILES"', json.dumps(tiles)))
    return load_job(job, list(overrides))


@functools.cache
def expected_levels(tiles_json: str, dtype: str, downsample: str) -> tuple:
    """Level 0 fused in one piece, then each level by brute-force window reduction."""
    config = load_job_from_values(tiles_json, dtype, downsample)
    plan = make_plan(config)
    return tuple(reference_pyramid(fused_channel(plan), plan, downsample))


def load_job_from_values(tiles_json, dtype, downsample):
    from pipelines.config import build_config
    output = {"uri": "/nonexistent", "chunks": [16, 16, 8], "block": [2, 1, 2],
              "levels": "auto", "downsample": downsample}
    if dtype:
        output["dtype"] = dtype
    fusion = {"blending": "first" if downsample == "mode" else "linear"}
    return build_config({"input": {"tiles": tiles_json}, "output": output, "fusion": fusion})


def read_level(fmt, uri, level) -> np.ndarray:
    return tensorstore_read(uri, LEVEL_PATH[fmt].format(level), fmt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt,codec,shard", MATRIX, ids=lambda v: str(v))
def test_interop_matrix_every_level(tmp_path, small_acquisition, fmt, codec, shard, dtype):
    config = job_for(tmp_path, small_acquisition, fmt, codec, shard, dtype)
    result = export_local(config)
    summary = result.summary
    expected = expected_levels(small_acquisition["paths"]["tiles_json"], dtype, "mean")
    assert summary.levels == len(expected) == 4  # auto: (2,2,1) twice, then (2,2,2) fits a chunk
    for level, want in enumerate(expected):
        got = read_level(fmt, config.output.uri, level)
        assert got.dtype == np.dtype(dtype)
        if np.dtype(dtype).kind == "f":  # float means: summation order may differ by an ulp
            np.testing.assert_allclose(got, want, rtol=1e-6)
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"level {level}")
        if fmt == "zarr3":
            np.testing.assert_array_equal(zarr_read(config.output.uri, str(level)), got)
        elif fmt == "zarr2":
            np.testing.assert_array_equal(zarr2_read(config.output.uri, str(level)), got)
        if fmt in ("n5", "zarr2"):   # z5py reads both (not Zarr v3)
            path = LEVEL_PATH[fmt].format(level)
            np.testing.assert_array_equal(z5py_read(config.output.uri, path), got)


def test_mode_downsampling_for_labels(tmp_path, small_acquisition):
    config = job_for(tmp_path, small_acquisition, "n5", "zstd", downsample="mode", levels=3,
                     overrides=["fusion.blending=first"])
    export_local(config)
    # intensity data makes ties common: a sharp test of "most frequent, smallest on ties"
    expected = expected_levels(small_acquisition["paths"]["tiles_json"], "", "mode")
    for level in range(3):
        np.testing.assert_array_equal(read_level("n5", config.output.uri, level), expected[level])


def test_levels_computed_in_later_stages_match_in_block_levels(tmp_path, small_acquisition):
    """Blocks of [2, 2, 2] chunks compute levels 0–1 in one pass; one-chunk shards force one
    level per pass, each reading the level below from the store. Same bytes either way."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    in_block = job_for(tmp_path / "a", small_acquisition, "zarr3", "zstd",
                       overrides=["output.block=[2,2,2]"])
    staged = job_for(tmp_path / "b", small_acquisition, "zarr3", "zstd", shard=[1, 1, 1],
                     overrides=["output.block=[1,1,1]"])
    plan_a = export_local(in_block).plan
    plan_b = export_local(staged).plan
    assert plan_a.stages[0].count == 2 and len(plan_b.stages) == 4
    for level in range(4):
        np.testing.assert_array_equal(read_level("zarr3", in_block.output.uri, level),
                                      read_level("zarr3", staged.output.uri, level))


def test_sharded_output_with_empty_regions(tmp_path):
    import tifffile
    for n in range(2):  # two tiles with a wide gap along x
        tifffile.imwrite(tmp_path / f"t{n}.tif", np.full((8, 16, 16), 700 + n, "uint16"), contiguous=True)
    tiles = [{"index": n, "file": f"t{n}.tif", "position": [80 * n, 0, 0], "size": [16, 16, 8],
              "type": "GRAY16"} for n in range(2)]
    (tmp_path / "tiles.json").write_text(json.dumps(tiles))
    config = load_job(write_job(tmp_path / "job.toml", "tiles.json", "out.zarr"),
                      ["output.format=zarr3", "output.chunks=[8,8,8]", "output.shard=[4,2,1]",
                       "output.block=[4,2,1]"])
    result = export_local(config)
    summary = result.summary
    shards = sorted(p.relative_to(tmp_path / "out.zarr/0/c").as_posix()
                    for p in (tmp_path / "out.zarr/0/c").rglob("*") if p.is_file())
    assert shards == ["0/0/0", "0/0/2"]  # z/y/x: x-shards 0 (x 0–32) and 2 (x 64–96); x-shard 1 is empty
    index = np.frombuffer((tmp_path / "out.zarr/0/c/0/0/0").read_bytes()[-(16 * 8 + 4):-4], "<u8")
    absent = (index.reshape(-1, 2) == 2**64 - 1).all(axis=1)
    assert absent.tolist() == [False, False, True, True] * 2  # inner x-chunks 2, 3 hold only fill
    got = tensorstore_read(str(tmp_path / "out.zarr"), "0", "zarr3")
    assert (got[:, :, :16] == 700).all() and (got[:, :, 16:80] == 0).all() and (got[:, :, 80:] == 701).all()
    np.testing.assert_array_equal(zarr_read(str(tmp_path / "out.zarr"), "0"), got)
    assert summary.blocks == 2 and summary.objects_skipped == 0  # the empty shard is not even scheduled


# ------------------------------------------------------------------ layouts, on Spark

@pytest.fixture(scope="module")
def two_channels(small_acquisition) -> list[str]:
    second = add_channel(small_acquisition, "dim", lambda px: px // 3)
    return [small_acquisition["paths"]["tiles_json"], second]


@pytest.mark.spark
@pytest.mark.parametrize("fmt,version", [("zarr2", "0.4"), ("zarr3", "0.5")])
def test_ome_zarr_with_channels_on_spark(spark, tmp_path, small_acquisition, two_channels, fmt, version):
    config = job_for(tmp_path, small_acquisition, fmt, "zstd", tiles=two_channels,
                     shard=[2, 1, 2] if fmt == "zarr3" else None)
    summary = export(config, executor=SparkExecutor(spark=spark)).summary
    group = zarr.open_group(config.output.uri, mode="r", zarr_format=2 if fmt == "zarr2" else 3)
    image = (v04 if version == "0.4" else v05).Image.from_zarr(group)  # raises if invalid
    attrs = group.attrs.asdict() if fmt == "zarr2" else group.attrs.asdict()["ome"]
    omero = attrs["omero"]["channels"]
    plan = make_plan(config)
    for c in range(2):  # windows are the channels' real ranges, gathered from the receipts
        level0 = fused_channel(plan, 0, c)
        assert (omero[c]["window"]["start"], omero[c]["window"]["end"]) == (level0.min(), level0.max())
        np.testing.assert_array_equal(np.asarray(group["0"][c]), level0)
    assert [ch["label"] for ch in omero] == ["tiles", "tiles-dim"]
    nodes = list(Reader(parse_url(config.output.uri))())
    assert nodes[0].load(Multiscales) is not None and len(nodes[0].data) == summary.levels
    datasets = [d["path"] for d in attrs["multiscales"][0]["datasets"]]
    assert datasets == [str(k) for k in range(summary.levels)]
    assert len(image.ome_attributes.multiscales[0].datasets) == summary.levels  # as the validator read it


@pytest.mark.spark
def test_n5_viewer_layout_with_channels_on_spark(spark, tmp_path, small_acquisition, two_channels):
    config = job_for(tmp_path, small_acquisition, "n5", "gzip", tiles=two_channels, levels=3)
    export(config, executor=SparkExecutor(spark=spark))
    root = Path(config.output.uri)
    assert json.loads((root / "attributes.json").read_text()) == {"n5": "2.5.1"}
    for c in range(2):
        group = json.loads((root / f"c{c}/attributes.json").read_text())
        assert group["scales"] == [[1, 1, 1], [2, 2, 1], [4, 4, 1]]
        assert group["name"] == ("tiles", "tiles-dim")[c]   # the channel names (trial P)
        for k in range(3):
            attrs = json.loads((root / f"c{c}/s{k}/attributes.json").read_text())
            assert attrs["downsamplingFactors"] == group["scales"][k]
            assert attrs["pixelResolution"] == {"unit": "um", "dimensions": [0.4, 0.4, 2.0]}
    plan = make_plan(config)
    np.testing.assert_array_equal(tensorstore_read(str(root), "c1/s0", "n5"), fused_channel(plan, 0, 1))


def time_lapse_job(tmp_path: Path, two_channels: list[str], output: str) -> Path:
    """A job of two timepoints of one channel (the two channels' tile JSONs), chunks of
    [16, 16, 8], `output` the rest of its [output] table (and any tables after it)."""
    job = tmp_path / "job.toml"
    job.write_text(f"[input]\ntimepoints = {json.dumps([[two_channels[0]], [two_channels[1]]])}\n"
                   f"[output]\nchunks = [16, 16, 8]\n{output}\n")
    return job


@pytest.mark.spark
def test_bdv_layout_with_timepoints_on_spark(spark, tmp_path, small_acquisition, two_channels):
    job = time_lapse_job(tmp_path, two_channels, 'uri = "out.n5"\nlayout = "bdv"\nlevels = 2\n'
                                                 '[spark]\nmaster = "local[2]"')
    summary = export(load_job(job), executor=SparkExecutor(spark=spark)).summary
    xml = ET.parse(tmp_path / "out.xml").getroot()
    assert xml.find(".//ImageLoader").get("format") == "bdv.n5"
    assert xml.find(".//ImageLoader/n5").text == "out.n5"
    assert [tp.text for tp in xml.findall(".//Timepoints/*")] == ["0", "1"]
    plan = make_plan(load_job(job))
    for t in range(2):  # each timepoint holds its own tiles' data (timepoint 1 is the dim channel)
        np.testing.assert_array_equal(tensorstore_read(str(tmp_path / "out.n5"), f"setup0/timepoint{t}/s0", "n5"),
                                      fused_channel(plan, t, 0))
        assert tensorstore_read(str(tmp_path / "out.n5"), f"setup0/timepoint{t}/s1", "n5").shape == \
            tuple(reversed(plan.output.shapes[1]))
    attrs = json.loads((tmp_path / "out.n5/setup0/timepoint0/s1/attributes.json").read_text())
    assert attrs["pixelResolution"]["dimensions"] == [0.4, 0.4, 2.0]  # level 0's: n5-ij scales it
    setup = json.loads((tmp_path / "out.n5/setup0/attributes.json").read_text())
    assert setup["downsamplingFactors"] == [[1, 1, 1], [2, 2, 1]] and setup["dataType"] == "uint16"
    assert summary.extra_files == ("out.xml",)


@pytest.mark.parametrize("fmt,version", [("zarr2", "0.4"), ("zarr3", "0.5")])
def test_a_time_lapse_records_the_time_between_timepoints(tmp_path, two_channels, fmt, version):
    """Trial V: OME-Zarr's t axis always had scale 1 and no unit; output.time_interval and
    output.time_unit record the frame interval, and the validators accept it."""
    job = time_lapse_job(tmp_path, two_channels, f'uri = "out.zarr"\nformat = "{fmt}"\n'
                                                 f'time_interval = 30\ntime_unit = "second"')
    config = load_job(job)
    export_local(config)
    group = zarr.open_group(config.output.uri, mode="r", zarr_format=2 if fmt == "zarr2" else 3)
    image = (v04 if version == "0.4" else v05).Image.from_zarr(group)   # raises if invalid
    multiscale = image.ome_attributes.multiscales[0]
    assert [(a.name, a.unit) for a in multiscale.axes][0] == ("t", "second")
    scale = multiscale.datasets[0].coordinateTransformations[0].scale
    assert scale[0] == 30.0 and np.asarray(group["0"]).shape[0] == 2
