"""End-to-end exports on Spark from a job file, judged by tensorstore and zarr-python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_job
from pipelines.driver import export
from pipelines.errors import BlockFailed
from pipelines.geometry import Box
from pipelines.pixels.fusion import fuse
from pipelines.plan import make_plan
from pipelines.spark import SparkExecutor
from tests.conftest import ROOT, write_job
from tests.readers import tensorstore_read, zarr_read

pytestmark = pytest.mark.spark


def reference_volume(config) -> np.ndarray:
    """The whole volume fused in this process, without Spark or blocks."""
    plan = make_plan(config)
    box = Box((0, 0, 0), plan.array.shape)
    return fuse(box, plan.tiles[0][0], plan.offset, plan.blending, plan.array.dtype)


@pytest.mark.parametrize("fmt,codec", [("n5", "zstd"), ("n5", "gzip"), ("zarr3", "zstd"),
                                       ("zarr3", "{ name = 'blosc', cname = 'lz4' }")])
def test_export_matches_reference_and_ground_truth(spark, small_acquisition, tmp_path, fmt, codec):
    acq = small_acquisition
    uri = tmp_path / f"volume.{fmt}"
    job = write_job(tmp_path / "job.toml", acq["paths"]["tiles_json"], str(uri),
                    f'format = "{fmt}"\ncodec = {codec if codec.startswith("{") else repr(codec)}')
    config = load_job(job)
    result = export(config, executor=SparkExecutor(spark=spark))
    dataset = result.summary.arrays[0]
    got = tensorstore_read(str(uri), dataset, fmt)
    np.testing.assert_array_equal(got, reference_volume(config))
    if fmt == "zarr3":
        np.testing.assert_array_equal(zarr_read(str(uri), dataset), got)
    truth = np.load(acq["paths"]["ground_truth"])
    assert got.shape == truth.shape
    # Poisson noise: the fused volume is the truth within a few standard deviations
    error = got.astype(float) - truth
    assert abs(error.mean()) < 1.0
    assert (np.abs(error) <= 6 * np.sqrt(truth + 1) + 1).mean() > 0.999
    counts = result.plan.output.block_grid(0).chunks.counts
    assert result.summary.objects_written + result.summary.objects_skipped == np.prod(counts)
    assert result.summary.ranges == ((got.min(), got.max()),)


def test_empty_chunks_are_skipped_and_read_as_zero(spark, tmp_path):
    # two tiles 40 voxels apart along x: chunks in the gap hold only the fill value
    import tifffile
    for n in range(2):
        tifffile.imwrite(tmp_path / f"t{n}.tif", np.full((8, 16, 16), 500 + n, "uint16"), contiguous=True)
    tiles = [{"index": n, "file": f"t{n}.tif", "position": [56 * n, 0, 0], "size": [16, 16, 8],
              "type": "GRAY16"} for n in range(2)]
    (tmp_path / "tiles.json").write_text(json.dumps(tiles))
    job = write_job(tmp_path / "job.toml", "tiles.json", "out.n5", "")
    config = load_job(job, ["output.block=[3,1,1]"])
    summary = export(config, executor=SparkExecutor(spark=spark)).summary
    assert summary.blocks == 2  # blocks [0..3) and [3..5) of 5 chunks along x
    assert summary.objects_written == 3 and summary.objects_skipped == 2  # x chunks 1, 2 are empty
    assert sorted(p.name for p in (tmp_path / "out.n5/c0/s0").iterdir()) == ["0", "3", "4", "attributes.json"]
    got = tensorstore_read(str(tmp_path / "out.n5"), "c0/s0", "n5")
    assert (got[:, :, 16:56] == 0).all() and (got[:, :, :16] == 500).all() and (got[:, :, 56:] == 501).all()


@pytest.mark.parametrize("fmt,extra", [("n5", []), ("zarr3", ["output.shard=[2,2,2]"])])
def test_blocks_across_tiles_side_by_side_are_their_pixels(spark, tmp_path, fmt, extra):
    """Tiles side by side with a gap, cut by blocks anywhere: blocks that stay in their
    memory-mapped tiles (`fusion.fuse_pieces`) give exactly the tiles' pixels, pasted by
    numpy here, as tensorstore reads the output (N5, and sharded Zarr v3)."""
    import tifffile

    from pipelines.pixels.fusion import fuse_pieces
    from pipelines.pixels.mosaic import Mosaic
    from pipelines.tiles import read_region

    rng = np.random.default_rng(5)
    size, tiles, want = (48, 40, 24), [], np.zeros((48, 80, 144), "uint16")   # z, y, x
    for n, (i, j, k) in enumerate(np.ndindex(3, 2, 2)):
        if (i, j, k) == (2, 1, 0):
            continue   # a gap: fill-value chunks and partly covered blocks
        pixels = rng.integers(1, 65535, size[::-1], dtype="uint16")
        tifffile.imwrite(tmp_path / f"t{n}.tif", pixels, contiguous=True)
        at = (48 * i, 40 * j, 24 * k)
        want[at[2]:at[2] + 24, at[1]:at[1] + 40, at[0]:at[0] + 48] = pixels
        tiles.append({"index": n, "file": f"t{n}.tif", "position": list(at), "size": list(size),
                      "type": "GRAY16"})
    (tmp_path / "tiles.json").write_text(json.dumps(tiles))
    job = write_job(tmp_path / "job.toml", "tiles.json", "out", f'format = "{fmt}"')
    # blocks of 256 KiB: smaller ones are assembled (`copying.MIN_BYTES`)
    config = load_job(job, ["output.chunks=[32,32,16]", "output.block=[2,2,2]", *extra])
    plan = make_plan(config)
    block = Box((0, 0, 0), (64, 64, 32))   # eight tiles meet in it
    assert isinstance(fuse_pieces(block, plan.tiles[0][0], plan.offset, plan.blending,
                                  plan.array.dtype, read=read_region), Mosaic)
    result = export(config, executor=SparkExecutor(spark=spark))
    got = tensorstore_read(str(tmp_path / "out"), result.summary.arrays[0], fmt)
    np.testing.assert_array_equal(got, want)
    assert result.summary.ranges == ((int(want.min()), int(want.max())),)


@pytest.mark.parametrize("fmt,extra", [("n5", []), ("zarr3", ["output.shard=[2,2,2]"])])
def test_blocks_where_tiles_overlap_are_the_brute_force_blend(spark, tmp_path, fmt, extra):
    """Overlapping tiles, cut by blocks that stay in their pieces (`fusion.fuse_pieces`:
    the tiles' own voxels and the zones they share, blended): the output as tensorstore
    reads it is linear blending written out voxel by voxel in numpy (`brute_linear`)."""
    import tifffile

    from pipelines.pixels import fusion
    from pipelines.pixels.fusion import fuse_pieces
    from pipelines.pixels.mosaic import Mosaic
    from pipelines.tiles import Tile, TileSet, read_region
    from tests.unit.pixels.test_fusion import brute_linear

    rng = np.random.default_rng(8)
    size, tiles, pixels, listed = (56, 44, 20), [], {}, []
    for n, (i, j, k) in enumerate(np.ndindex(3, 2, 2)):
        at = (47 * i, 37 * j, 17 * k)   # neighbours overlap by 9, 7 and 3 voxels
        data = rng.integers(1, 65535, size[::-1], dtype="uint16")
        tifffile.imwrite(tmp_path / f"t{n}.tif", data, contiguous=True)
        tiles.append(Tile(n, f"t{n}", at, size))
        pixels[f"t{n}"] = data
        listed.append({"index": n, "file": f"t{n}.tif", "position": list(at), "size": list(size),
                       "type": "GRAY16"})
    (tmp_path / "tiles.json").write_text(json.dumps(listed))
    want = brute_linear(tiles, pixels, TileSet(tuple(tiles)).bounds, "uint16")
    job = write_job(tmp_path / "job.toml", "tiles.json", "out", f'format = "{fmt}"\n'
                    '[fusion]\nblending = "linear"')
    # blocks of 256 KiB: smaller ones are assembled (`copying.MIN_BYTES`)
    config = load_job(job, ["output.chunks=[32,32,16]", "output.block=[2,2,2]", *extra])
    plan = make_plan(config)
    block = Box((0, 0, 0), (64, 64, 32))   # tiles overlap in it
    got = fuse_pieces(block, plan.tiles[0][0], plan.offset, plan.blending, plan.array.dtype,
                      read=read_region)
    reaching = fusion._visible(block, plan.tiles[0][0], plan.offset, plan.blending)
    assert isinstance(got, Mosaic) and len(got.pieces) > len(reaching)   # and blended zones
    result = export(config, executor=SparkExecutor(spark=spark))
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path / "out"), result.summary.arrays[0], fmt),
                                  want)
    assert result.summary.ranges == ((int(want.min()), int(want.max())),)


@pytest.mark.parametrize("fmt", ["n5", "zarr3"])
def test_a_failing_block_leaves_no_metadata(spark, small_acquisition, tmp_path, fmt):
    uri = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(uri),
                    f'format = "{fmt}"\n[debug]\nfail_blocks = [[1, 0, 0]]')
    with pytest.raises(BlockFailed, match=r"block \[1, 0, 0\]: InjectedFailure.*no metadata was written"):
        export(load_job(job), executor=SparkExecutor(spark=spark))
    files = [p.relative_to(uri).as_posix() for p in uri.rglob("*") if p.is_file()]
    assert files, "the other blocks (and half of the failing one) wrote chunks"
    assert not [f for f in files if f.endswith(("attributes.json", "zarr.json"))]
    record = json.loads((tmp_path / "out.job.json").read_text())
    assert record["status"] == "failed" and "block [1, 0, 0]" in record["error"]
    assert "InjectedFailure" in (tmp_path / "out.error.log").read_text()


@pytest.mark.slow
def test_command_line_run_as_a_user_would(small_acquisition, tmp_path):
    """`python jobs/export.py job.toml --set ...` starts its own Spark and prints the result."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out/volume.zarr")
    run = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job),
                          "--set", "output.format=zarr3", "--set", "spark.master=local[1]"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"dataset:  {tmp_path / 'out/volume.zarr'}" in run.stdout
    assert re.search(r"^blocks (\d+)/\1 \(100%\)", run.stderr, re.M), run.stderr[-2000:]
    got = tensorstore_read(str(tmp_path / "out/volume.zarr"), "0", "zarr3")
    assert got.shape == tuple(reversed(json.loads(Path(small_acquisition["paths"]["acquisition_json"])
                                                  .read_text())["ground_truth_shape"]))


@pytest.mark.slow
def test_spark_submit_properties_win_over_the_job_file(small_acquisition, tmp_path):
    """Under spark-submit, the job file's spark.master (local[2] here) is not used, and a
    property spark-submit was given wins over the job file's, with a note; the job file's
    other properties still apply (the event log is on). A secret among spark-submit's
    properties is named in a warning, never repeated (trial AA: not a word)."""
    events = {name: tmp_path / name for name in ("job-events", "submit-events")}
    for folder in events.values():
        folder.mkdir()
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out.n5")
    job.write_text(job.read_text() + f'"eventLog.enabled" = true\n'
                                     f'"eventLog.dir" = "{events["job-events"].as_uri()}"\n')
    submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    run = subprocess.run([str(submit), "--master", "local[1]",
                          "--conf", f"spark.eventLog.dir={events['submit-events'].as_uri()}",
                          "--conf", "spark.executorEnv.AWS_SECRET_ACCESS_KEY=shown-by-ps-3141",
                          str(ROOT / "jobs/export.py"), str(job)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "spark:    master local[1]" in run.stdout
    # spark-submit runs the script with its stderr joined to its stdout
    assert f"note: spark.eventLog.dir = {events['submit-events'].as_uri()} from spark-submit" in run.stdout
    assert list(events["submit-events"].iterdir()) and not list(events["job-events"].iterdir())
    assert ("warning: spark.executorEnv.AWS_SECRET_ACCESS_KEY from spark-submit: a secret as a "
            "Spark property is shown in the Spark UI") in run.stdout, run.stdout[-3000:]
    assert "shown-by-ps-3141" not in run.stdout + run.stderr
    assert tensorstore_read(str(tmp_path / "out.n5"), "c0/s0", "n5").any()
    # again, nothing to do: still a SparkContext (an event log of its own), which YARN's
    # cluster mode needs of every application's driver (review: exit 13 without one)
    again = subprocess.run(run.args, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout[-3000:]
    assert len(list(events["submit-events"].iterdir())) == 2


@pytest.mark.slow
def test_tile_stitch_under_spark_submit_makes_a_spark_context_even_to_reuse(small_acquisition, tmp_path):
    """YARN's cluster mode fails an application whose driver made no SparkContext: a
    second stitch that reuses the first registration made none (review). On a copy of
    the acquisition: stitching writes beside its tile JSON."""
    events = tmp_path / "events"
    events.mkdir()
    source = Path(small_acquisition["paths"]["tiles_json"]).parent
    shutil.copytree(source / "tiles", tmp_path / "acq" / "tiles")
    shutil.copy(source / "tiles.json", tmp_path / "acq")
    job = write_job(tmp_path / "job.toml", str(tmp_path / "acq/tiles.json"), "out.n5")
    submit = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
              "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
              str(ROOT / "jobs/stitch.py"), str(job)]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    for _ in range(2):
        run = subprocess.run(submit, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        # the session started before the registration, which saw it running (trial AG:
        # "+ 0.0 s start-up" every time)
        assert re.search(r"\(\+ \d+\.\d s start-up\)", run.stdout) and "(+ 0.0 s start-up)" not in run.stdout, \
            run.stdout[-3000:]
    assert "reused" in run.stdout, run.stdout[-3000:]
    assert len(list(events.iterdir())) == 2


@pytest.mark.slow
def test_local_cluster_executors_write_their_own_chunks(small_acquisition, tmp_path):
    """Separate executor JVMs (and their Python workers) fuse and write; the driver commits."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out.zarr",
                    'format = "zarr3"')
    run = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job),
                          "--set", "spark.master=local-cluster[2,1,1024]"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "spark:    master local-cluster[2,1,1024]" in run.stdout
    reference = reference_volume(load_job(job))
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path / "out.zarr"), "0", "zarr3"), reference)


def test_overwrite_replaces_a_committed_dataset(spark, small_acquisition, tmp_path):
    from pipelines.errors import OutputError
    uri = tmp_path / "out"
    first = load_job(write_job(tmp_path / "a.toml", small_acquisition["paths"]["tiles_json"], str(uri)),
                     ["output.levels=2"])
    export(first, executor=SparkExecutor(spark=spark))
    second = load_job(write_job(tmp_path / "b.toml", small_acquisition["paths"]["tiles_json"], str(uri)),
                      ["output.format=zarr3"])
    with pytest.raises(OutputError, match="pass --overwrite to replace it"):
        export(second, executor=SparkExecutor(spark=spark))
    export(second, executor=SparkExecutor(spark=spark), overwrite=True)
    files = sorted(p.relative_to(uri).as_posix() for p in uri.rglob("*") if p.is_file())
    assert "attributes.json" not in files and not any(f.startswith("c0/") for f in files)
    np.testing.assert_array_equal(tensorstore_read(str(uri), "0", "zarr3"), reference_volume(second))


def test_an_export_that_starts_spark_leaves_a_session_already_running_alone(spark, small_acquisition,
                                                                             tmp_path):
    """export(config) without an executor starts Spark from [spark] and stops it at the
    end; when this process already runs a session (a notebook's, this test session's),
    Spark hands that one over instead, and the export must not stop it."""
    import io
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))
    result = export(load_job(job), stream=io.StringIO())
    assert result.summary.objects_written > 0
    assert spark.sparkContext.parallelize(range(4), 2).sum() == 6   # still running
