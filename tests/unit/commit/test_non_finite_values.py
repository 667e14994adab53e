"""Float tiles holding NaN and ±inf: the display windows in the metadata, the job record
and the run report are made of the finite values, so every document is standard JSON
(trial N: `"max": Infinity` in zarr.json, which z5py and browsers refuse)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from pipelines.config import load_job
from pipelines.pixels.value_range import ValueRange, value_range
from pipelines.testing.synthetic import make_acquisition
from tests.conftest import write_job
from tests.pipeline_helpers import export_local


def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_the_range_of_floats_is_of_their_finite_values():
    data = np.array([[[np.nan, -np.inf, 3.5], [np.inf, -2.0, np.nan]]], dtype=np.float32)
    assert value_range(data) == (-2.0, 3.5)
    seen = ValueRange()
    seen.see(np.full((1, 1, 2), np.nan, np.float32))   # a chunk of NaN only: no range
    seen.see(data)
    assert seen.numbers() == (-2.0, 3.5)


@pytest.mark.parametrize("fmt", ["zarr3", "zarr2"])
def test_non_finite_voxels_leave_every_document_standard_json(tmp_path, fmt):
    acq = tmp_path / "acq"
    make_acquisition(acq, grid=(2, 1, 1), tile=(40, 32, 8), jitter=0.0, seed=2, truth=False,
                     tile_type="GRAY32")
    tile = acq / "tiles" / "tile-0000.tif"
    pixels = tifffile.imread(tile)
    finite = pixels.copy()
    pixels[2, 3, 4], pixels[3, 4, 5], pixels[4, 5, 6] = np.inf, -np.inf, np.nan
    tifffile.imwrite(tile, pixels)
    # a second channel: the same pixels in files of its own
    shutil.copytree(acq / "tiles", acq / "other")
    doc = json.loads((acq / "tiles.json").read_text())
    (acq / "other.json").write_text(json.dumps(
        [{**tile, "file": tile["file"].replace("tiles/", "other/")} for tile in doc]))
    job = write_job(tmp_path / "job.toml", "", str(tmp_path / "out"),
                    extra=f'format = "{fmt}"\ndtype = "float32"\n')
    text = job.read_text().replace('tiles = ""', f'tiles = ["{acq / "tiles.json"}", "{acq / "other.json"}"]')
    job.write_text(text)
    export_local(load_job(job))
    documents = [p for p in tmp_path.rglob("*") if p.is_file() and
                 (p.suffix == ".json" or p.name in (".zattrs", ".zarray", ".zgroup"))]
    assert any(p.name in ("zarr.json", ".zattrs") for p in documents)
    for path in documents:
        strict_json(path.read_text())   # raises on NaN, Infinity, -Infinity
    root = tmp_path / "out" / ("zarr.json" if fmt == "zarr3" else ".zattrs")
    doc = strict_json(root.read_text())
    omero = (doc.get("attributes", doc).get("ome", doc.get("attributes", doc))).get("omero")
    others = np.concatenate([finite.ravel(), tifffile.imread(acq / "tiles" / "tile-0001.tif").ravel()])
    window = omero["channels"][0]["window"]
    assert window["start"] <= float(np.float32(others.min())) + 1 and np.isfinite(window["end"])
