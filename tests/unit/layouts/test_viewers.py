"""Viewer metadata is judged by readers we did not write: ome-zarr-models (OME-NGFF 0.4 on
Zarr v2, 0.5 on Zarr v3), ome-zarr-py's reader, ElementTree + tensorstore for BigDataViewer's
N5 layout and XML, and tensorstore for the n5-viewer layout. Each test writes a real small
two-level pyramid with our format modules into a LocalStore."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydantic
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader
from ome_zarr_models import v04, v05

from pipelines.formats import n5, zarr2, zarr3
from pipelines.formats.base import ArraySpec, json_bytes
from pipelines.formats.codecs import Compressor
from pipelines.geometry import ChunkGrid, ceil_div
from pipelines.layouts import paths as layouts
from pipelines.layouts import viewers
from pipelines.storage import LocalStore
from tests.readers import tensorstore_read

FACTORS = [(1, 1, 1), (2, 2, 1)]
RESOLUTION = (0.5, 0.5, 2.0)        # µm, x, y, z
SHAPE = (21, 14, 5)                  # level 0 voxels, x, y, z (odd x: a ragged level 1)
CHUNKS = (8, 8, 4)
ORIGIN = (10.0, -3.0, 4.0)           # µm of level 0's voxel (0, 0, 0)
ZSTD = Compressor("zstd", level=3)
CASES = {"zyx": ((), ()), "czyx": ((2,), ("c",)), "tczyx": ((2, 2), ("t", "c"))}


def level_specs(path_of, lead=(), lead_names=(), dtype="uint16") -> list[ArraySpec]:
    """One ArraySpec per level, path `path_of(k)`, shapes rounded up at every level."""
    return [ArraySpec(path_of(k), tuple(ceil_div(n, f) for n, f in zip(SHAPE, fs)), CHUNKS, dtype,
                      ZSTD, resolution=RESOLUTION, lead=lead, lead_names=lead_names)
            for k, fs in enumerate(FACTORS)]


def write_array(store: LocalStore, module, spec: ArraySpec, seed: int) -> np.ndarray:
    """Random data for `spec` (lead axes, then z, y, x), written chunk by chunk, metadata after."""
    volume = np.random.default_rng(seed).integers(0, 4000, spec.shape_zyx).astype(spec.dtype)
    grid = ChunkGrid(spec.shape, spec.chunks)
    for lead_index in np.ndindex(*spec.lead):
        for index in np.ndindex(*grid.counts):
            block = volume[lead_index][grid.chunk_box(index).slices_zyx()]
            store.put(module.chunk_key(spec, index, lead_index) if spec.lead
                      else module.chunk_key(spec, index), module.encode_chunk(spec, block))
    for key, doc in module.array_documents(spec):
        store.put(key, doc)
    return volume


def channels_for(lead, lead_names) -> list[viewers.Channel]:
    count = dict(zip(lead_names, lead)).get("c", 1)
    return [viewers.Channel(f"ch{i}", 0, 4000) for i in range(count)]


def write_ome(root: Path, version: str, lead, lead_names) -> tuple[list[ArraySpec], list[np.ndarray]]:
    """An OME-Zarr image group at `root`: arrays "0" and "1", group metadata last."""
    module = zarr2 if version == "0.4" else zarr3
    store = LocalStore(root)
    levels = level_specs(str, lead, lead_names)
    volumes = [write_array(store, module, spec, k) for k, spec in enumerate(levels)]
    options = dict(channels=channels_for(lead, lead_names), name="fused", downsampling="mean",
                   translations=viewers.level_translations(RESOLUTION, FACTORS, ORIGIN))
    if version == "0.4":
        store.put(".zgroup", json_bytes({"zarr_format": 2}))
        store.put(".zattrs", json_bytes(viewers.ome_v04_attributes(levels, FACTORS, **options)))
    else:
        attrs = viewers.ome_v05_attributes(levels, FACTORS, **options)
        store.put("zarr.json", json_bytes({"zarr_format": 3, "node_type": "group",
                                           "attributes": attrs}))
    return levels, volumes


def expected_transforms(lead_names, k) -> list[dict]:
    scale = [1.0] * len(lead_names) + [RESOLUTION[2], RESOLUTION[1] * FACTORS[k][1],
                                       RESOLUTION[0] * FACTORS[k][0]]
    half = [(f - 1) / 2 * r for f, r in zip(FACTORS[k], RESOLUTION)]
    shift = [o + h for o, h in zip(ORIGIN, half)]
    return [{"type": "scale", "scale": scale},
            {"type": "translation", "translation": [0.0] * len(lead_names) + shift[::-1]}]


# ---------------------------------------------------------------- OME-NGFF 0.4 / 0.5

def check_model(image, lead_names, levels, version):
    ome = image.attributes if version == "0.4" else image.attributes.ome
    multiscale, = ome.multiscales
    assert [a.name for a in multiscale.axes] == [*lead_names, "z", "y", "x"]
    assert [a.type for a in multiscale.axes] == (
        [viewers.OME_AXIS_TYPES[n] for n in lead_names] + ["space"] * 3)
    assert [a.unit for a in multiscale.axes][-3:] == ["micrometer"] * 3
    assert [d.path for d in multiscale.datasets] == ["0", "1"]
    for k, dataset in enumerate(multiscale.datasets):
        got = [t.model_dump() for t in dataset.coordinateTransformations]
        assert got == expected_transforms(lead_names, k)
        assert tuple(image.members[dataset.path].shape) == levels[k].shape_zyx
    return ome


@pytest.mark.parametrize("case", CASES)
def test_ome_v04_image_validates(tmp_path, case):
    lead, lead_names = CASES[case]
    levels, _ = write_ome(tmp_path, "0.4", lead, lead_names)
    image = v04.Image.from_zarr(zarr.open_group(str(tmp_path), mode="r", zarr_format=2))
    ome = check_model(image, lead_names, levels, "0.4")
    assert ome.multiscales[0].version == "0.4"
    # an omero block only along a c axis (ome-zarr-py refuses one without it)
    if "c" in lead_names:
        assert len(ome.omero.channels) == dict(zip(lead_names, lead))["c"]
    else:
        assert ome.omero is None


@pytest.mark.parametrize("case", CASES)
def test_ome_v05_image_validates(tmp_path, case):
    lead, lead_names = CASES[case]
    levels, _ = write_ome(tmp_path, "0.5", lead, lead_names)
    image = v05.Image.from_zarr(zarr.open_group(str(tmp_path), mode="r", zarr_format=3))
    ome = check_model(image, lead_names, levels, "0.5")
    assert ome.version == "0.5"
    assert "version" not in image.attributes.model_dump()["ome"]["multiscales"][0]
    for dataset in ome.multiscales[0].datasets:
        assert image.members[dataset.path].dimension_names == (*lead_names, "z", "y", "x")
    if "c" in lead_names:
        assert len(ome.model_dump()["omero"]["channels"]) == dict(zip(lead_names, lead))["c"]
    else:
        assert ome.model_dump().get("omero") is None


def test_ome_validators_reject_what_we_must_not_write(tmp_path):
    """Negative controls: the validators do check the rules the documents above satisfy."""
    levels, _ = write_ome(tmp_path / "a", "0.5", (2,), ("c",))
    doc = json.loads((tmp_path / "a/zarr.json").read_text())
    doc["attributes"]["ome"]["multiscales"][0]["axes"][0]["name"] = "ch"  # ≠ dimension_names
    (tmp_path / "a/zarr.json").write_text(json.dumps(doc))
    with pytest.raises(pydantic.ValidationError, match="dimension names"):
        v05.Image.from_zarr(zarr.open_group(str(tmp_path / "a"), mode="r", zarr_format=3))

    write_ome(tmp_path / "b", "0.4", (), ())
    attrs = json.loads((tmp_path / "b/.zattrs").read_text())
    datasets = attrs["multiscales"][0]["datasets"]
    datasets.reverse()  # coarsest first is forbidden
    (tmp_path / "b/.zattrs").write_text(json.dumps(attrs))
    with pytest.raises(pydantic.ValidationError, match="lower resolution"):
        v04.Image.from_zarr(zarr.open_group(str(tmp_path / "b"), mode="r", zarr_format=2))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("case", CASES)
def test_ome_zarr_py_reader_finds_the_multiscale(tmp_path, case, version):
    lead, lead_names = CASES[case]
    levels, volumes = write_ome(tmp_path, version, lead, lead_names)
    nodes = list(Reader(parse_url(str(tmp_path)))())
    image = nodes[0]
    assert image.load(Multiscales) is not None
    assert [tuple(d.shape) for d in image.data] == [spec.shape_zyx for spec in levels]
    assert [a["name"] for a in image.metadata["axes"]] == [*lead_names, "z", "y", "x"]
    if "c" in lead_names:   # channel names come from the omero block, written along a c axis
        assert image.metadata["channel_names"] == [c.label for c in channels_for(lead, lead_names)]
    else:
        assert "channel_names" not in image.metadata
    np.testing.assert_array_equal(np.asarray(image.data[1]), volumes[1])


def test_dataset_paths_are_relative_to_the_image_group():
    levels = level_specs(lambda k: f"out/fused/{k}")
    assert viewers.image_group(levels) == "out/fused"
    attrs = viewers.ome_v04_attributes(levels, FACTORS)
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0", "1"]
    assert "omero" not in attrs
    # no translation written when every level sits at 0
    assert all(len(d["coordinateTransformations"]) == 1
               for d in attrs["multiscales"][0]["datasets"])
    with pytest.raises(ValueError, match="parent"):
        viewers.image_group([levels[0], level_specs(lambda k: f"other/{k}")[1]])


def test_omero_channels_windows_and_colours():
    levels = level_specs(str, (3,), ("c",))
    channels = [viewers.Channel("a", 10, 900), viewers.Channel("b", 0, 50, color="ff0000"),
                viewers.Channel("c", 5, 6)]
    omero = viewers.ome_v05_attributes(levels, FACTORS, channels)["ome"]["omero"]
    assert [c["color"] for c in omero["channels"]] == ["00FF00", "FF0000", "00FFFF"]
    assert omero["channels"][0]["window"] == {"min": 0.0, "max": 65535.0, "start": 10.0, "end": 900.0}
    assert viewers.omero(levels[:1], [viewers.Channel("x", 0, 1)])["channels"][0]["color"] == "FFFFFF"
    with pytest.raises(ValueError, match="3"):
        viewers.ome_v04_attributes(levels, FACTORS, channels[:2])
    with pytest.raises(ValueError, match="hex"):
        viewers.omero(levels, [viewers.Channel("x", 0, 1, color="green")])
    with pytest.raises(ValueError, match="t, c"):
        viewers.ome_axes(("c", "t"))


# ---------------------------------------------------------------- BigDataViewer N5 + XML

def write_bdv(root: Path, channel_names, timepoints) -> dict:
    """setup{n}/timepoint{t}/s{k} written with our n5 module, group attributes, then the XML."""
    store = LocalStore(root / "fused.n5")
    volumes = {}
    for s in range(len(channel_names)):
        for t in range(timepoints):
            levels = level_specs(lambda k, s=s, t=t: viewers.bdv_path(s, t, k))
            for k, spec in enumerate(levels):
                volumes[spec.path] = write_array(store, n5, spec, seed=100 * s + 10 * t + k)
                doc = json.loads(store.get(f"{spec.path}/attributes.json"))
                store.put(f"{spec.path}/attributes.json",
                          json_bytes({**doc, **viewers.bdv_dataset_attributes(levels, FACTORS, k)}))
            store.put(f"{viewers.bdv_path(s, t)}/attributes.json",
                      json_bytes(viewers.bdv_timepoint_attributes(levels)))
        store.put(f"setup{s}/attributes.json", json_bytes(viewers.bdv_setup_attributes(levels, FACTORS)))
    for key, doc in n5.group_documents(levels[0]):
        store.put(key, doc)
    xml = viewers.bdv_xml(levels[0], "fused.n5", channel_names, timepoints, translation=ORIGIN)
    (root / "fused.xml").write_text(xml, encoding="utf-8")
    return volumes


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


def test_bdv_xml_opens_every_view_of_the_n5(tmp_path):
    volumes = write_bdv(tmp_path, ["488nm", "561nm"], timepoints=2)
    spim = ET.parse(tmp_path / "fused.xml").getroot()
    assert spim.tag == "SpimData" and spim.get("version") == "0.2"
    base = tmp_path / spim.findtext("BasePath")
    loader = spim.find("SequenceDescription/ImageLoader")
    assert (loader.get("format"), loader.get("version")) == ("bdv.n5", "1.1")
    assert loader.find("n5").get("type") == "relative"
    container = base / loader.findtext("n5")
    assert json.loads((container / "attributes.json").read_text())["n5"].startswith("2.")

    setups = spim.findall("SequenceDescription/ViewSetups/ViewSetup")
    channel_ids = {c.findtext("id"): c.findtext("name") for c in
                   spim.findall("SequenceDescription/ViewSetups/Attributes[@name='channel']/Channel")}
    tps = spim.find("SequenceDescription/Timepoints")
    assert tps.get("type") == "range"
    timepoints = range(int(tps.findtext("first")), int(tps.findtext("last")) + 1)
    registrations = {(r.get("timepoint"), r.get("setup")): r
                     for r in spim.findall("ViewRegistrations/ViewRegistration")}
    assert len(setups) == 2 and list(timepoints) == [0, 1] and len(registrations) == 4

    opened = set()
    for setup in setups:
        sid = int(setup.findtext("id"))
        assert channel_ids[setup.findtext("attributes/channel")] == setup.findtext("name")
        size = [int(v) for v in setup.findtext("size").split()]
        voxel = floats(setup.findtext("voxelSize/size"))
        assert setup.findtext("voxelSize/unit") == "µm" and size == list(SHAPE)
        attrs = json.loads((container / f"setup{sid}/attributes.json").read_text())
        assert attrs["dataType"] == "uint16"
        for t in timepoints:
            affine = floats(registrations[(str(t), str(sid))].findtext("ViewTransform/affine"))
            assert affine == [voxel[0], 0, 0, ORIGIN[0], 0, voxel[1], 0, ORIGIN[1],
                              0, 0, voxel[2], ORIGIN[2]]
            for k, factors in enumerate(attrs["downsamplingFactors"]):
                path = f"setup{sid}/timepoint{t}/s{k}"
                data = tensorstore_read(str(container), path, "n5")
                assert data.dtype == np.dtype(attrs["dataType"])
                assert data.shape[::-1] == tuple(ceil_div(n, f) for n, f in zip(size, factors))
                np.testing.assert_array_equal(data, volumes[path])
                opened.add(path)
    assert opened == set(volumes)  # the XML reaches every dataset written, and only those


def test_bdv_xml_defaults_and_refusals():
    spec = level_specs(lambda k: viewers.bdv_path(0, 0, k))[0]
    xml = viewers.bdv_xml(spec, "x.n5", ["only"])
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<SpimData')
    spim = ET.fromstring(xml.split("\n", 1)[1])
    assert floats(spim.findtext(".//affine"))[3::4] == [0.0, 0.0, 0.0]
    assert spim.findtext(".//Timepoints/last") == "0"
    assert viewers.bdv_path(3, 12, 2) == "setup3/timepoint12/s2"  # unpadded, as bdv-core reads
    with pytest.raises(ValueError):
        viewers.bdv_xml(spec, "x.n5", [], 1)


def test_bdv_xml_numbers_have_no_float_noise():
    """0.4 µm × 3 is 1.2000000000000002 in binary floating point; the XML says 1.2."""
    spec = level_specs(lambda k: viewers.bdv_path(0, 0, k))[0]
    spec = dataclasses.replace(spec, resolution=(0.4 * 3, 0.4 * 3, 0.1 * 3))
    xml = viewers.bdv_xml(spec, "x.n5", ["only"], translation=(0.1 + 0.2, 0.0, 2.0))
    spim = ET.fromstring(xml.split("\n", 1)[1])
    assert spim.findtext(".//voxelSize/size") == "1.2 1.2 0.3"
    assert spim.findtext(".//affine") == "1.2 0.0 0.0 0.3 0.0 1.2 0.0 0.0 0.0 0.0 0.3 2.0"


# ---------------------------------------------------------------- n5-viewer

def write_n5_viewer(root: Path, channels: int) -> dict:
    store = LocalStore(root)
    volumes = {}
    for c in range(channels):
        levels = level_specs(lambda k, c=c: layouts.array_path("n5-viewer", 0, c, k))
        for k, spec in enumerate(levels):
            volumes[spec.path] = write_array(store, n5, spec, seed=10 * c + k)
            doc = json.loads(store.get(f"{spec.path}/attributes.json"))
            extra = viewers.n5_viewer_dataset_attributes(levels, FACTORS, k, translation=ORIGIN)
            store.put(f"{spec.path}/attributes.json", json_bytes({**doc, **extra}))
        store.put(f"c{c}/attributes.json",
                  json_bytes(viewers.n5_viewer_channel_attributes(levels, FACTORS, ORIGIN)))
    for key, doc in n5.group_documents(levels[0]):
        store.put(key, doc)
    return volumes


def test_n5_viewer_layout(tmp_path):
    volumes = write_n5_viewer(tmp_path, channels=2)
    # As n5-viewer lists them: channel groups ^c\d+$ under the root, scales ^s\d+$ under each.
    channel_groups = sorted(p.name for p in tmp_path.iterdir() if re.fullmatch(r"c\d+", p.name))
    assert channel_groups == ["c0", "c1"]
    for group in channel_groups:
        attrs = json.loads((tmp_path / group / "attributes.json").read_text())
        scales = sorted((p.name for p in (tmp_path / group).iterdir()
                         if re.fullmatch(r"s\d+", p.name)), key=lambda s: int(s[1:]))
        assert attrs["scales"] == [list(f) for f in FACTORS] and len(scales) == len(attrs["scales"])
        assert attrs["pixelResolution"] == {"unit": "um", "dimensions": list(RESOLUTION)}
        assert [row[3] for row in attrs["affineTransform"]] == list(ORIGIN)
        base = None
        for k, scale in enumerate(scales):
            meta = json.loads((tmp_path / group / scale / "attributes.json").read_text())
            assert meta["downsamplingFactors"] == attrs["scales"][k]
            # n5-ij refuses a pyramid whose scales carry different pixelResolution
            assert meta["pixelResolution"] == attrs["pixelResolution"]
            assert meta["affineTransform"] == attrs["affineTransform"]
            data = tensorstore_read(str(tmp_path), f"{group}/{scale}", "n5")
            base = base or data.shape[::-1]
            assert data.shape[::-1] == tuple(ceil_div(n, f) for n, f in
                                             zip(base, meta["downsamplingFactors"]))
            np.testing.assert_array_equal(data, volumes[f"{group}/{scale}"])


def test_n5_viewer_and_ome_numbers_have_no_float_noise_and_channels_their_names():
    """Trial P: -1.2000000000000002 in an n5-viewer affineTransform, and the channel names
    nowhere in an n5-viewer container (n5-viewer names the data by `name`)."""
    levels = level_specs(lambda k: layouts.array_path("n5-viewer", 0, 0, k))
    levels = [dataclasses.replace(spec, resolution=(0.4 * 3, 0.4, 2.0)) for spec in levels]
    attrs = viewers.n5_viewer_channel_attributes(levels, FACTORS, (0.0, -3 * 0.4, -12.0), "GFP")
    assert attrs["name"] == "GFP"
    assert [row[3] for row in attrs["affineTransform"]] == [0.0, -1.2, -12.0]
    assert attrs["pixelResolution"]["dimensions"] == [1.2, 0.4, 2.0]
    assert viewers.level_translations((0.4, 0.4, 2.0), [(1, 1, 1)], (0.1 + 0.2, 0, 0))[0][0] == 0.3
    assert "name" not in viewers.n5_viewer_channel_attributes(levels, FACTORS)


def test_n5_viewer_leaves_out_a_zero_translation():
    levels = level_specs(lambda k: layouts.array_path("n5-viewer", 0, 0, k))
    assert "affineTransform" not in viewers.n5_viewer_channel_attributes(levels, FACTORS)
    assert viewers.n5_viewer_dataset_attributes(levels, FACTORS, 1) == {
        "downsamplingFactors": [2, 2, 1],
        "pixelResolution": {"unit": "um", "dimensions": [0.5, 0.5, 2.0]}}
    with pytest.raises(ValueError, match="factors"):
        viewers.n5_viewer_channel_attributes(levels, FACTORS[:1])


def test_level_translations_centre_coarse_voxels():
    got = viewers.level_translations((0.5, 1.0, 2.0), [(1, 1, 1), (2, 4, 1)], (1.0, 0.0, 0.0))
    assert got == [(1.0, 0.0, 0.0), (1.25, 1.5, 0.0)]
