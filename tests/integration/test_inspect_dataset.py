"""scripts/inspect_dataset.py describes every format in one axis order (x, y, z, as the
export prints it) and shows the shard and inner-chunk shapes of a sharded Zarr v3."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.config import load_job
from tests.conftest import ROOT, write_job
from tests.pipeline_helpers import add_channel, export_local


def inspect(path, *options: str, code: int = 0) -> str:
    run = subprocess.run([sys.executable, str(ROOT / "scripts/inspect_dataset.py"), str(path),
                          *options],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stderr
    return run.stdout + run.stderr


@pytest.mark.parametrize("fmt, extra", [("n5", ""), ("zarr2", ""), ("zarr3", ""),
                                        ("zarr3", "shard = [2, 1, 2]")])
def test_every_format_is_described_in_x_y_z(small_acquisition, tmp_path, fmt, extra):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "volume"), f'format = "{fmt}"\n{extra}')
    summary = export_local(load_job(job)).summary
    printed = inspect(tmp_path / "volume")
    assert f"shape (x, y, z) = {list(summary.shape)}, " in printed, printed
    assert "chunks (x, y, z) [16, 16, 8]" in printed, printed   # write_job's chunks, x, y, z
    if extra:
        assert "shards (x, y, z) [32, 16, 16]: each holds [2, 1, 2] inner chunks of [16, 16, 8]" in printed, printed
    else:
        assert "shards" not in printed


def test_one_array_of_a_pyramid_is_opened_and_the_container_counted(small_acquisition, tmp_path):
    """Trial P: with --dataset the count was of the arrays it picked, '(1 arrays in the
    container)' for a container of three."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "volume"), "levels = 3")
    export_local(load_job(job))
    printed = inspect(tmp_path / "volume", "--dataset", "c0/s1")
    assert "c0/s1" in printed and "(3 arrays in the container)" in printed, printed
    wrong = inspect(tmp_path / "volume", "--dataset", "c9/s0", code=2)   # trial S
    assert "error: c9/s0 is not an array of" in wrong and "c0/s0, c0/s1, c0/s2" in wrong, wrong


@pytest.mark.parametrize("fmt", ["zarr2", "zarr3"])
def test_the_channel_axis_of_ome_zarr_is_named(small_acquisition, tmp_path, fmt):
    """Trial AB: OME-Zarr 0.4's channels were "axis 0 = 2" (Zarr v2 arrays carry no axis
    names; the image group's multiscales do), where 0.5 printed "c = 2"."""
    second = add_channel(small_acquisition, "dim", lambda px: px // 2)
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "volume"), f'format = "{fmt}"')
    job.write_text(job.read_text().replace(
        f'tiles = "{small_acquisition["paths"]["tiles_json"]}"',
        f'tiles = ["{small_acquisition["paths"]["tiles_json"]}", "{second}"]'))
    summary = export_local(load_job(job)).summary
    printed = inspect(tmp_path / "volume")
    assert f"shape (x, y, z) = {list(summary.shape)}, c = 2, " in printed, printed
