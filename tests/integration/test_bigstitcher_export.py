"""Exporting BigStitcher projects end to end: every loader, on Spark and in this process;
the output read back by tensorstore and zarr-python and placed by its own metadata only
(OME scale and translation, N5 pixelResolution and stage origin, the BDV XML), then
compared with the phantom at those world positions."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_job
from pipelines.driver import export
from pipelines.execute.executor import LocalExecutor
from pipelines.registering import stitch
from pipelines.spark import SparkExecutor
from tests.bigstitcher_project import (
    VOXEL_X,
    covered,
    phantom,
    scenario,
    write_filemap_xml,
    write_project,
)
from tests.conftest import write_job
from tests.pipeline_helpers import export_local
from tests.readers import tensorstore_read, zarr_read


def job(tmp_path: Path, xml: Path, fmt: str, extra: str = "", overrides=()) -> object:
    path = write_job(tmp_path / "job.toml", str(xml), str(tmp_path / "out" / "volume"),
                     extra=f'format = "{fmt}"\n' + extra + '\n[fusion]\nblending = "linear"\n'
                     'interpolation = "linear"\n')
    return load_job(path, list(overrides))


def world_of(shape_zyx, scale_xyz, translation_xyz) -> np.ndarray:
    """World units (x, y, z) of every voxel centre, from µm scale and translation."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    micrometres = np.stack([x, y, z], -1) * np.asarray(scale_xyz) + np.asarray(translation_xyz)
    return micrometres / VOXEL_X


def check_against_phantom(volume: np.ndarray, world: np.ndarray, views) -> None:
    where = covered(world, views)
    assert where.mean() > 0.5
    reference = phantom(world)
    error = np.sqrt(np.mean((volume[where].astype(float) - reference[where]) ** 2))
    assert error / np.sqrt(np.mean(reference[where] ** 2)) < 0.03
    assert not volume[~where].any()


def ome_placement(root: Path) -> tuple[list[float], list[float]]:
    """Level 0's scale and translation (µm, x, y, z) from the OME-Zarr metadata."""
    doc = json.loads((root / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    transforms = {t["type"]: t for t in doc["datasets"][0]["coordinateTransformations"]}
    scale = transforms["scale"]["scale"][-3:][::-1]
    translation = transforms.get("translation", {"translation": [0, 0, 0]})["translation"][-3:][::-1]
    return scale, translation


@pytest.mark.parametrize("loader", ["tiff", "n5", "hdf5", "zarr"])
def test_every_loader_exports_a_placed_ome_zarr_on_spark(spark, tmp_path, loader):
    views = scenario("angles")
    xml = write_project(tmp_path / "acq", views, loader)
    config = job(tmp_path, xml, "zarr3", extra='layout = "ome"')
    export(config, executor=SparkExecutor(spark=spark))
    root = tmp_path / "out" / "volume"
    volume = zarr_read(str(root), "0")
    if volume.ndim == 4:   # OME with a channel axis
        volume = volume[0]
    scale, translation = ome_placement(root)
    assert scale == pytest.approx([VOXEL_X] * 3)
    check_against_phantom(volume, world_of(volume.shape, scale, translation), views)
    np.testing.assert_array_equal(tensorstore_read(str(root), "0", "zarr3").reshape(volume.shape), volume)


def test_n5_output_records_resolution_and_origin_and_bdv_registration(tmp_path):
    """An oblique scan with a coarser output grid: N5's pixelResolution (µm per voxel) and
    stage origin (voxels) place the volume; the BDV XML's registration says the same."""
    views = scenario("oblique")
    xml = write_project(tmp_path / "acq", views, "n5")
    config = job(tmp_path, xml, "n5", extra='layout = "bdv"', overrides=["fusion.voxel_size=[1, 1, 2]"])
    export_local(config)
    root = tmp_path / "out" / "volume"
    attributes = json.loads((root / "setup0/timepoint0/s0/attributes.json").read_text())
    resolution = attributes["pixelResolution"]["dimensions"]
    assert resolution == pytest.approx([VOXEL_X, VOXEL_X, 2 * VOXEL_X])
    origin = np.asarray(attributes["stageOriginVoxels"]) * np.asarray(resolution)   # µm
    volume = tensorstore_read(str(root), "setup0/timepoint0/s0", "n5")
    check_against_phantom(volume, world_of(volume.shape, resolution, origin), views)
    bdv = ET.parse(tmp_path / "out" / "volume.xml").getroot()
    affine = [float(v) for v in bdv.find(".//ViewRegistration/ViewTransform/affine").text.split()]
    assert affine[0] == pytest.approx(VOXEL_X) and affine[10] == pytest.approx(2 * VOXEL_X)
    assert [affine[3], affine[7], affine[11]] == pytest.approx(list(origin))


def test_a_translated_grid_as_xml_gives_the_tile_json_bytes(tmp_path):
    """A project whose views are whole-voxel translations exports exactly the bytes its
    stitching-spark tile JSON exports (the translation path, copy fast path included)."""
    from pipelines.testing.synthetic import make_acquisition
    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(2, 2, 1), tile=(40, 36, 12), overlap=0.2, jitter=0, seed=3, truth=False)
    tiles = json.loads((acq / "tiles.json").read_text())
    write_filemap_xml(acq / "tiles.xml", [
        {"setup": t["index"], "size": t["size"], "file": t["file"], "attributes": {"tile": t["index"]},
         "chain": [("Translation", np.vstack([np.hstack([np.eye(3), np.c_[t["position"]]]), [0, 0, 0, 1]]))]}
        for t in tiles])

    outputs = []
    for name, source in (("json", acq / "tiles.json"), ("xml", acq / "tiles.xml")):
        (tmp_path / name).mkdir()
        config = load_job(write_job(tmp_path / name / "job.toml", str(source),
                                    str(tmp_path / name / "volume")))
        export_local(config)
        outputs.append(tmp_path / name / "volume")
    chunks = [sorted(p.relative_to(o) for p in o.rglob("*") if p.is_file() and p.name != "attributes.json")
              for o in outputs]
    assert chunks[0] == chunks[1] and len(chunks[0]) > 10
    for relative in chunks[0]:
        assert (outputs[0] / relative).read_bytes() == (outputs[1] / relative).read_bytes(), relative


STITCH = """
[stitching]
enabled = true
search = 12
downsample = [2, 2, 1]
"""


def test_registration_on_a_jittered_xml_grid_writes_the_stitched_xml(tmp_path):
    """A 2 × 2 grid of anisotropic views (z voxels twice x) at jittered stage translations,
    plus one view of another angle: `[stitching] enabled` registers the grid views in their
    pixel space, skips the pairs with the rotated view (other linear part), writes
    `<name>-stitched.xml` with a "Stitching Transform" prepended to every view, and fuses
    from it. The stitched transforms compose to the true positions (median ≤ 0.5, max ≤
    1.5 voxels, after the one global shift no registration can recover)."""
    from pipelines.testing.synthetic import make_acquisition
    from pipelines.tiles import read_tile_json
    from pipelines.tiles.bigstitcher import read_project
    from tests.bigstitcher_project import rotation_y

    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(2, 2, 1), tile=(96, 80, 24), overlap=0.25, jitter=5, seed=2,
                     truth=False, density=25)
    stage, truth = read_tile_json(acq / "tiles.json"), read_tile_json(acq / "tiles-true.json")
    calibration = np.diag([1.0, 1.0, 2.0, 1.0])
    views = []
    for setup, tile, angle in [(t.index, t, 0) for t in stage] + [(len(stage), stage.tiles[0], 1)]:
        grid = np.eye(4)
        grid[:3, 3] = calibration[:3, :3] @ np.asarray(tile.position)
        chain = [("Translation to Regular Grid", grid), ("calibration", calibration)]
        if angle:
            chain.insert(0, ("rotation", rotation_y(30, [40, 40, 24])))
        views.append({"setup": setup, "size": tile.size, "file": tile.path, "chain": chain,
                      "attributes": {"tile": tile.index, "angle": angle}})
    xml = write_filemap_xml(tmp_path / "project.xml", views, absolute=True)
    indented = ET.parse(xml)   # as BigStitcher writes it (trial AS)
    ET.indent(indented)
    indented.write(xml, encoding="utf-8", xml_declaration=True)

    config = load_job(write_job(tmp_path / "job.toml", str(xml), str(tmp_path / "out" / "volume"),
                                extra=STITCH))
    result = export_local(config)
    assert result.summary.blocks > 0
    stitched = tmp_path / "project-stitched.xml"
    report = json.loads((tmp_path / "project-stitching.json").read_text())
    assert report["pairs"]["skipped_linear_parts_differ"] >= 1 and report["pairs"]["kept"] >= 4
    for registration in ET.parse(stitched).getroot().iter("ViewRegistration"):
        names = [t.findtext("Name") for t in registration.findall("ViewTransform")]
        assert names[0] == "Stitching Transform" and "calibration" in names[1:]
    # trial AS: the inserted transform was written on one line with the next one
    lines = [line.strip() for line in stitched.read_text().splitlines()]
    assert lines.count("<Name>Stitching Transform</Name>") == len(views), lines[:20]
    assert lines.count("<Name>calibration</Name>") == len(views), lines[:20]

    def pixel_positions(path: Path) -> dict[int, np.ndarray]:
        found = {}
        for view in read_project(str(path), views={"angle": [0]}).tiles[0][0]:
            affine = np.vstack([np.asarray(view.transform).reshape(3, 4), [0, 0, 0, 1]])
            assert np.allclose(affine[:3, :3], calibration[:3, :3])
            found[view.index] = np.linalg.solve(calibration[:3, :3], affine[:3, 3])
        return found

    found = pixel_positions(stitched)
    true = np.array([t.position for t in truth])
    error = np.array([found[t.index] for t in truth]) - true
    after = np.linalg.norm(error - error.mean(axis=0), axis=1)
    before = np.array([t.position for t in stage]) - true
    assert np.median(np.linalg.norm(before - before.mean(axis=0), axis=1)) > 2
    assert np.median(after) <= 0.5 and after.max() <= 1.5, after

    # Defect (a user's trial): stitching the stitched XML again put every view back at its
    # stage position (the correction, ≈ 0, replaced the earlier one instead of adding to it)
    again = load_job(write_job(tmp_path / "again.toml", str(stitched), str(tmp_path / "unused"),
                               extra=STITCH))
    stitch(again, LocalExecutor(), stream=io.StringIO())
    restitched = tmp_path / "project-stitched-stitched.xml"
    moved = pixel_positions(restitched)
    assert max(np.linalg.norm(moved[i] - found[i]) for i in found) <= 0.25, (moved, found)
    for registration in ET.parse(restitched).getroot().iter("ViewRegistration"):
        names = [t.findtext("Name") for t in registration.findall("ViewTransform")]
        assert names.count("Stitching Transform") == 1, names

    # Defect (the same trial): registering some views (input.views) rewrote the stitched
    # XML from the project, and the other views lost their Stitching Transforms
    def stitching_of(path: Path) -> dict[str, str]:
        return {registration.get("setup"): registration.find("ViewTransform").findtext("affine")
                for registration in ET.parse(path).getroot().iter("ViewRegistration")}
    earlier = stitching_of(stitched)
    stitch(load_job(tmp_path / "job.toml", ["input.views={tile=[0,1,2]}", "stitching.search=4"]),
           LocalExecutor(), stream=io.StringIO())
    assert stitching_of(stitched)["3"] == earlier["3"]   # tile 3, not registered this time
    assert len(stitching_of(stitched)) == len(earlier)


@pytest.mark.parametrize("loader", ["tiff", "n5", "hdf5"])
def test_a_project_in_s3_fuses_as_it_does_on_disk(s3_bucket, tmp_path, loader):
    """The XML and its views uploaded to a bucket (moto on loopback): read over range
    requests, the export equals the export of the same project on disk."""
    import boto3
    endpoint, bucket = s3_bucket
    xml = write_project(tmp_path / "acq", scenario("oblique"), loader)
    client = boto3.client("s3", endpoint_url=endpoint)
    for path in (tmp_path / "acq").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"acq/{path.relative_to(tmp_path / 'acq')}")
    outputs = []
    for name, source in (("disk", str(xml)), ("s3", f"s3://{bucket}/acq/{xml.name}")):
        config = load_job(write_job(tmp_path / f"{name}.toml", source, str(tmp_path / name / "volume")),
                          [f"s3.endpoint_url={endpoint}"])
        export_local(config)
        outputs.append(tensorstore_read(str(tmp_path / name / "volume"), "c0/s0", "n5"))
    assert outputs[0].any()
    np.testing.assert_array_equal(outputs[0], outputs[1])
