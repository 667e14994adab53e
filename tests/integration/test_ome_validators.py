"""OME-Zarr as exported (the real driver, commit included) is accepted by every OME
validator we can install, for 0.4 (Zarr v2) and 0.5 (Zarr v3), with one channel and with
several, one timepoint and two:

- ome-zarr-models (pydantic models of the spec),
- ngff-zarr: its `validate` (the OME-NGFF JSON schemas, plain and strict) and its reader
  with `validate=True`,
- ome-zarr-io's fileset validator (schemas plus the checks they cannot express, such as
  "omero channels need a c axis"): it checks 0.5 only, so 0.4 goes through ome-zarr-py's
  own axis and coordinate-transformation checks instead.

The exports run in this process (LocalExecutor): no pixel of this needs Spark.
"""

from __future__ import annotations

import json
from pathlib import Path

import ngff_zarr
import pytest
import zarr
from ome_zarr.axes import Axes
from ome_zarr.format import format_from_version
from ome_zarr_io import validate as ome_zarr_io_validate
from ome_zarr_models import v04, v05

from pipelines.config import load_job
from tests.conftest import write_job
from tests.pipeline_helpers import add_channel, export_local

VERSIONS = {"0.4": "zarr2", "0.5": "zarr3"}
# (timepoints, channels): the lead axes t and c appear only when there are several
SHAPES = [(1, 1), (1, 2), (2, 1), (2, 3)]


@pytest.fixture(scope="module")
def channel_jsons(small_acquisition) -> list[list[str]]:
    """Two timepoints of three channels of one acquisition's geometry (the second and
    third dimmer), each channel of each timepoint with its own tile files."""
    dimmer = {"": None, "half": 2, "third": 3}
    rows = []
    for t in range(2):
        rows.append([small_acquisition["paths"]["tiles_json"] if (t, name) == (0, "") else
                     add_channel(small_acquisition, f"t{t}{name}",
                                 lambda px, d=by: px if d is None else px // d)
                     for name, by in dimmer.items()])
    return rows


def export_ome(folder: Path, version: str, rows: list[list[str]]) -> Path:
    """An OME-Zarr image of the timepoints × channels `rows`, two levels; its root group."""
    first = rows[0][0]
    job = write_job(folder / "job.toml", first, str(folder / "out.zarr"),
                    f'format = "{VERSIONS[version]}"\nlevels = 2')
    job.write_text(job.read_text().replace(f'tiles = "{first}"', f"timepoints = {json.dumps(rows)}"))
    export_local(load_job(job))
    return folder / "out.zarr"


def ome_attributes(root: Path, version: str) -> dict:
    """The image group's OME attributes as a reader sees them (0.5: under `ome`)."""
    if version == "0.4":
        return json.loads((root / ".zattrs").read_text())
    return json.loads((root / "zarr.json").read_text())["attributes"]


@pytest.mark.parametrize("timepoints,channel_count", SHAPES)
@pytest.mark.parametrize("version", list(VERSIONS))
def test_every_ome_validator_accepts_what_we_export(tmp_path, channel_jsons, version, timepoints,
                                                     channel_count):
    root = export_ome(tmp_path, version, [row[:channel_count] for row in channel_jsons[:timepoints]])
    attrs = ome_attributes(root, version)
    ome = attrs if version == "0.4" else attrs["ome"]
    axes = [a["name"] for a in ome["multiscales"][0]["axes"]]
    lead = (["t"] if timepoints > 1 else []) + (["c"] if channel_count > 1 else [])
    assert axes == [*lead, "z", "y", "x"]

    # ome-zarr-models: raises (pydantic.ValidationError) on anything it refuses
    group = zarr.open_group(str(root), mode="r", zarr_format=2 if version == "0.4" else 3)
    (v04 if version == "0.4" else v05).Image.from_zarr(group)

    # ngff-zarr: the OME-NGFF JSON schemas (plain and strict), then its reader
    for strict in (False, True):
        ngff_zarr.validate(attrs, version=version, model="image", strict=strict)
    multiscales = ngff_zarr.from_ngff_zarr(str(root), validate=True)
    assert len(multiscales.images) == 2 and list(multiscales.images[0].dims) == axes

    if version == "0.5":  # ome-zarr-io: schemas and the semantic checks (0.5 only)
        report = ome_zarr_io_validate(str(root))
        assert report.is_valid, str(report)
        assert [c.label for c in report.channels] == (
            [Path(p).stem for p in channel_jsons[0][:channel_count]] if channel_count > 1 else [])
    else:  # ome-zarr-py's own checks of 0.4 axes and transformations
        fmt = format_from_version("0.4")
        Axes(ome["multiscales"][0]["axes"], fmt=fmt).validate()
        transforms = [d["coordinateTransformations"] for d in ome["multiscales"][0]["datasets"]]
        fmt.validate_coordinate_transformations(len(axes), 2, transforms)
    assert ("omero" in ome) == (channel_count > 1)   # channels are described along a c axis
