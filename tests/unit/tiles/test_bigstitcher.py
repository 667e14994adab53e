"""Reading BigStitcher projects: what the XML says becomes tiles with the composed affines;
each bad project is one line, exit 2, nothing written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import TileError
from pipelines.tiles.bigstitcher import read_project
from pipelines.transforms import compose, from_matrix
from tests.bigstitcher_project import scenario, write_project
from tests.conftest import write_job
from tests.unit.config.test_validation import check_refused, export_job


@pytest.fixture
def angles(tmp_path) -> Path:
    return write_project(tmp_path / "acq", scenario("angles"), "tiff")


def edit(xml: Path, change) -> None:
    tree = ET.parse(xml)
    change(tree.getroot())
    tree.write(xml)


def test_transforms_compose_in_list_order_and_attributes_are_read(angles):
    project = read_project(str(angles))
    views = project.tiles[0][0].tiles
    assert [v.label for v in views] == ["view setup 0, timepoint 0", "view setup 1, timepoint 0"]
    expected = scenario("angles")[1].affine   # T0 · T1 · T2 composed by the test, in numpy
    assert np.allclose(np.asarray(views[1].transform).reshape(3, 4), expected[:3])
    assert views[0].transform is None and views[0].position == (0.0, 0.0, 0.0)  # identity: a position
    assert views[0].pixel_resolution == (0.5, 0.5, 0.5)    # µm per world unit: the x voxel size
    assert views[0].type == "GRAY16" and views[0].loader == "tiff"
    assert project.channel_names == ("channel0",)
    assert views[1].path == str(angles.parent / "view-1.tif")


def test_base_path_timepoints_missing_views_and_selection(tmp_path):
    views = scenario("grid")
    xml = write_project(tmp_path / "acq", views, "n5")

    def range_of_one_timepoint_setup_3_missing(root):
        sequence = root.find("SequenceDescription")
        timepoints = sequence.find("Timepoints")
        timepoints.set("type", "range")
        timepoints.remove(timepoints.find("integerpattern"))
        ET.SubElement(timepoints, "first").text = "0"
        ET.SubElement(timepoints, "last").text = "0"
        ET.SubElement(sequence.find("MissingViews"), "MissingView", timepoint="0", setup="3")
        root.find("BasePath").text = "acq"
    edit(xml, range_of_one_timepoint_setup_3_missing)
    moved = tmp_path / "project.xml"
    xml.rename(moved)   # BasePath "acq" is relative to the XML's folder
    project = read_project(str(moved))
    assert [t.label for t in project.tiles[0][0]] == [f"view setup {s}, timepoint 0" for s in (0, 1, 2)]
    assert project.tiles[0][0].tiles[0].path == str(tmp_path / "acq" / "dataset.n5")
    selected = read_project(str(moved), views={"tile": [1, 2]})
    assert [t.label for t in selected.tiles[0][0]] == ["view setup 1, timepoint 0", "view setup 2, timepoint 0"]
    assert [t.index for t in selected.tiles[0][0]] == [0, 1]   # numbered within the selection


def test_timepoint_patterns_and_lists(tmp_path):
    from pipelines.tiles.spimdata import _pattern, timepoints
    assert _pattern("0-6:2, 9", "here") == [0, 2, 4, 6, 9]
    element = ET.fromstring('<S><Timepoints type="list"><id>3</id><id>1</id></Timepoints></S>')
    assert timepoints(element, "here") == [1, 3]
    with pytest.raises(TileError, match="cannot read the pattern"):
        _pattern("every other", "here")
    with pytest.raises(TileError, match="has a step of 0"):
        _pattern("0-4:0", "here")
    # trial V: an empty list was "no views left to fuse"
    empty = ET.fromstring('<S><Timepoints type="list"><integerpattern>0-2</integerpattern></Timepoints></S>')
    with pytest.raises(TileError, match=r'<Timepoints type="list">: lists no timepoint ids'):
        timepoints(empty, "here")
    # trial AM: a range whose last lies below its first was "no views left to fuse" too
    backwards = ET.fromstring('<S><Timepoints type="range"><first>5</first><last>2</last></Timepoints></S>')
    with pytest.raises(TileError, match=r'<Timepoints type="range">: <last> 2 is below <first> 5'):
        timepoints(backwards, "here")


def test_an_unknown_element_among_the_missing_views_is_refused():
    """Trial V: `<View timepoint="1" setup="27"/>` (spimdata's is <MissingView>) was
    ignored, and the view fused as present."""
    from pipelines.tiles.spimdata import missing_views
    good = ET.fromstring('<S><MissingViews><MissingView timepoint="1" setup="27"/></MissingViews></S>')
    assert missing_views(good, "here") == {(1, 27)}
    bad = ET.fromstring('<S><MissingViews><View timepoint="1" setup="27"/></MissingViews></S>')
    with pytest.raises(TileError, match="here: <MissingViews> holds <View>; expected <MissingView"):
        missing_views(bad, "here")


def test_multichannel_projects_number_tiles_the_same_in_every_channel(tmp_path):
    views = scenario("grid")
    second = [type(v)(v.setup + 4, v.size, v.chain, v.voxel, tile=v.tile, channel=1) for v in views]
    xml = write_project(tmp_path / "acq", views + second, "hdf5")
    project = read_project(str(xml))
    assert project.channel_names == ("channel0", "channel1")
    first, other = project.tiles[0]
    assert [t.index for t in first] == [t.index for t in other] == [0, 1, 2, 3]
    assert [t.box for t in first] == [t.box for t in other]
    assert other.tiles[0].dataset == "t00000/s04/0/cells"


def refused(tmp_path, capsys, xml: Path, *expected: str):
    job = write_job(tmp_path / "job.toml", str(xml), "out/volume")
    code = export_job.main([str(job)])
    check_refused(capsys, tmp_path, code, *expected)


def test_a_missing_image_file_is_named(tmp_path, angles, capsys):
    (angles.parent / "view-1.tif").unlink()
    refused(tmp_path, capsys, angles, f"{angles}: view setup 1, timepoint 0: ", "view-1.tif",
            "not found")


def test_an_unknown_loader_is_named_with_the_supported_ones(tmp_path, angles, capsys):
    edit(angles, lambda root: root.find("SequenceDescription/ImageLoader").set("format", "bdv.omero"))
    refused(tmp_path, capsys, angles, "'bdv.omero' is not supported", "bdv.n5", "bdv.hdf5")


def test_a_singular_affine_is_refused(tmp_path, angles, capsys):
    def flatten(root):
        root.find("ViewRegistrations/ViewRegistration/ViewTransform/affine").text = \
            "1 0 0 0 0 1 0 0 0 0 0 0"
    edit(angles, flatten)
    refused(tmp_path, capsys, angles, "view setup 0, timepoint 0", "singular")


def test_a_size_that_disagrees_with_the_file_is_refused(tmp_path, angles, capsys):
    edit(angles, lambda root: root.find("SequenceDescription/ViewSetups/ViewSetup/size").__setattr__(
        "text", "64 64 47"))
    refused(tmp_path, capsys, angles, "view-0.tif", "view setup 0", "[64, 64, 47]", "[64, 64, 48]")


def test_a_missing_view_registration_is_refused(tmp_path, angles, capsys):
    def drop(root):
        group = root.find("ViewRegistrations")
        group.remove(group.find("ViewRegistration"))
    edit(angles, drop)
    refused(tmp_path, capsys, angles, "view setup 0, timepoint 0", "no ViewRegistration")


def test_a_view_whose_setup_was_removed_is_refused(tmp_path, angles, capsys):
    """Trial AM: a ViewSetup deleted, its registration and file mapping kept: the view was
    left out without a word and the part only it covered came out 0."""
    def drop(root):
        group = root.find("SequenceDescription/ViewSetups")
        group.remove(group.findall("ViewSetup")[-1])
    edit(angles, drop)
    refused(tmp_path, capsys, angles, "ViewRegistrations name view setup", "which ViewSetups does not hold")


@pytest.mark.parametrize("loader, path, attribute, value", [
    ("tiff", "SequenceDescription/ImageLoader/files/FileMapping", "timepoint", "zero"),
    ("tiff", "SequenceDescription/ImageLoader/files/FileMapping", "series", "first"),
    ("zarr", "SequenceDescription/ImageLoader/zgroups/zgroup", "setup", "one"),
    ("tiff", "SequenceDescription/MissingViews/MissingView", "setup", "x"),
    ("tiff", "SequenceDescription/ImageLoader/files/FileMapping", "timepoint", "--0"),  # review F2
    ("tiff", "SequenceDescription/ImageLoader/files/FileMapping", "series", "²"),
])
def test_an_id_that_is_not_a_whole_number_is_named(tmp_path, capsys, loader, path, attribute, value):
    """Defect (trial H): `int()` of these attributes raised ValueError: a traceback, exit 1."""
    xml = write_project(tmp_path / "acq", scenario("angles"), loader)

    def spoil(root):
        if path.endswith("MissingView"):
            ET.SubElement(root.find("SequenceDescription/MissingViews"), "MissingView",
                          timepoint="0", setup="0")
        root.find(path).set(attribute, value)
    edit(xml, spoil)
    tag = path.rsplit("/", 1)[1]
    refused(tmp_path, capsys, xml, f"<{tag}> attribute {attribute} must be a whole number, "
                                   f"found '{value}'")


def test_a_view_attribute_that_is_not_an_id_is_refused(tmp_path, capsys):
    """Defect (trial H): <channel>abc</channel> was dropped, and the view counted as
    channel 0 without a word."""
    xml = write_project(tmp_path / "acq", scenario("angles"), "tiff")

    def spoil(root):
        setup = root.findall("SequenceDescription/ViewSetups/ViewSetup")[1]
        found = setup.find("attributes")
        if found is None:
            found = ET.SubElement(setup, "attributes")
        channel = found.find("channel")
        if channel is None:
            channel = ET.SubElement(found, "channel")
        channel.text = text
    for text in ("abc", "--1", "¹"):   # the last two passed str.isdigit, then failed int()
        edit(xml, spoil)
        refused(tmp_path, capsys, xml, "ViewSetup 1: <attributes><channel> must be a whole number",
                f"found {text!r}")


def test_not_xml_and_not_a_project_are_refused(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text("<SpimData><unclosed>")
    refused(tmp_path, capsys, bad, "bad.xml", "not valid XML")
    bad.write_text("<Project/>")
    refused(tmp_path, capsys, bad, "expected a BigStitcher", "<Project>")


def test_views_selection_is_checked(tmp_path, angles, capsys):
    job = write_job(tmp_path / "job.toml", str(angles), "out/volume", extra="")
    code = export_job.main([str(job), "--set", "input.views={side = [0]}"])
    check_refused(capsys, tmp_path, code, "input.views.side", "angle")
    code = export_job.main([str(job), "--set", "input.views={angle = [7]}"])
    check_refused(capsys, tmp_path, code, "input.views names angle 7, which the project does not have")
    # trial AE: an unknown id beside known ones was dropped without a word
    code = export_job.main([str(job), "--set", "input.views={angle = [0, 7], setup = [0, 99]}"])
    check_refused(capsys, tmp_path, code, "input.views names angle 7, which the project does not "
                                          "have (its angle ids: 0, 1)")


def test_the_affine_helpers_agree_with_numpy():
    a = from_matrix(np.array([[1, 2, 0, 1], [0, 1, 0, 2], [0, 0, 3, 3], [0, 0, 0, 1]], float))
    b = from_matrix(np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]], float))
    m = np.vstack([np.asarray(compose(a, b)).reshape(3, 4), [0, 0, 0, 1]])
    ma, mb = (np.vstack([np.asarray(x).reshape(3, 4), [0, 0, 0, 1]]) for x in (a, b))
    assert np.allclose(m, ma @ mb)


def test_views_of_one_channel_with_different_pixel_types_are_refused(tmp_path, angles, capsys):
    import tifffile
    view = angles.parent / "view-1.tif"
    tifffile.imwrite(view, (tifffile.imread(view) // 256).astype(np.uint8))   # same shape, uint8
    refused(tmp_path, capsys, angles, "view setup 1, timepoint 0 holds uint8 pixels",
            "view setup 0, timepoint 0 holds uint16", "one pixel type")


def test_a_view_missing_at_one_timepoint_only_is_named():
    from pipelines.tiles import Tile
    from pipelines.tiles.bigstitcher import _check_same_views
    views = [Tile(s, f"v{s}.tif", (0.0, 0.0, 0.0), (8, 8, 8)) for s in range(3)]
    with pytest.raises(TileError, match=r"view setup 2 \(channel 0\) has a view at timepoint 2 but "
                                        r"none at timepoint 5"):
        _check_same_views({(2, 0): views, (5, 0): views[:2]}, "p.xml")
    _check_same_views({(2, 0): views, (5, 0): views, (2, 1): views[:1]}, "p.xml")  # per channel


def test_an_unknown_voxel_unit_is_refused_and_known_ones_convert(tmp_path, angles, capsys):
    def unit(name):
        def change(root):
            for element in root.iter("voxelSize"):
                element.find("unit").text = name
        return change
    edit(angles, unit("μm"))    # the Greek mu, as some writers spell it
    assert read_project(str(angles)).tiles[0][0].tiles[0].pixel_resolution == (0.5, 0.5, 0.5)
    edit(angles, unit("nm"))
    assert read_project(str(angles)).tiles[0][0].tiles[0].pixel_resolution == (0.0005,) * 3
    edit(angles, unit("furlong"))   # was taken as µm without a word
    refused(tmp_path, capsys, angles, "ViewSetup 0", "'furlong' is not a known unit")


@pytest.mark.parametrize("loader", ["n5", "zarr"])
def test_a_damaged_chunk_of_a_view_names_the_view_and_the_chunk(tmp_path, loader):
    from pipelines.geometry import Box
    from pipelines.tiles import read_region
    xml = write_project(tmp_path / "acq", scenario("angles"), loader)
    view = read_project(str(xml)).tiles[0][0].tiles[1]
    chunks = sorted(p for p in Path(view.path, view.dataset).rglob("*") if p.is_file() and p.stat().st_size > 64
                    and p.name not in ("attributes.json", "zarr.json", ".zarray", ".zattrs", ".zgroup"))
    first = chunks[0]
    first.write_bytes(first.read_bytes()[:40])   # cut short, as a failed copy leaves it
    damaged = str(first.relative_to(tmp_path))
    with pytest.raises(TileError, match="view setup 1, timepoint 0: .*cannot decode this chunk"
                       ) as raised:
        for z in range(0, view.size[2], 8):   # the whole view, whichever chunk that was
            read_region(view, Box((0, 0, z), (view.size[0], view.size[1], min(z + 8, view.size[2]))))
    assert damaged in str(raised.value), str(raised.value)


def test_the_world_unit_is_told_by_the_views_transforms(tmp_path):
    """Trial K: a project whose transforms are in µm (BigDataViewer's Fiji export, and this
    tool's own bdv layout: calibration diag(0.5, 0.5, 1) for 0.5 × 0.5 × 1 µm voxels) was
    read as if its world unit were the x pixel (BigStitcher's convention), so its output
    was labelled 0.5 µm per voxel while sampled every 1 µm. An affine refinement that
    scales a little keeps the x pixel as the unit."""
    from dataclasses import replace

    from tests.bigstitcher_project import matrix, translation

    def resolution(views) -> tuple[float, float, float]:
        xml = write_project(tmp_path / f"p{len(list(tmp_path.iterdir()))}", views, "tiff")
        return read_project(str(xml)).tiles[0][0].tiles[0].pixel_resolution

    pixel_world = scenario("grid")                        # calibration diag(1, 1, 2)
    assert resolution(pixel_world) == (0.5, 0.5, 0.5)
    refined = [replace(v, chain=[("Affine", matrix([1.02, 0.01, 0, 0, 0, 0.99, 0, 0, 0, 0, 1, 0])), *v.chain])
               for v in pixel_world]
    assert resolution(refined) == (0.5, 0.5, 0.5)
    # trial AE: a shear y += 0.35 x lengthens an x pixel by 6 %; the output had been
    # labelled 0.472 µm per voxel
    shear = ("Affine", matrix([1, 0, 0, 0, 0.35, 1, 0, 0, 0, 0, 1, 0]))
    sheared = [replace(v, chain=[shear, *v.chain]) for v in pixel_world]
    assert resolution(sheared) == (0.5, 0.5, 0.5)
    # review: near 1 µm a shear must not tip the choice between the pixel and the µm
    near = [replace(v, voxel=(1.05, 1.05, 2.1), chain=[shear, *v.chain]) for v in pixel_world]
    assert resolution(near) == (1.05, 1.05, 1.05)
    # review: a z calibration that does not match voxelSize (diag(1, 1, 2) for 0.5 x 0.5 x
    # 3 µm) spoils the volume a voxel is given (0.72), not the length of an x pixel
    mismatched = [replace(v, voxel=(0.5, 0.5, 3.0)) for v in pixel_world]
    assert resolution(mismatched) == (0.5, 0.5, 0.5)
    by_chance = [replace(v, voxel=(0.5, 0.5, 8.0)) for v in pixel_world]   # a volume of 1 µm³
    assert resolution(by_chance) == (0.5, 0.5, 0.5)
    micrometre_world = [replace(v, chain=[("Translation", translation(v.tile % 2 * 14.0, v.tile // 2 * 14.0, 0)),
                                          ("calibration", matrix([0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 1.0, 0]))])
                        for v in pixel_world]
    assert resolution(micrometre_world) == (1.0, 1.0, 1.0)
    sheared = [replace(v, chain=[shear, *v.chain]) for v in micrometre_world]
    assert resolution(sheared) == (1.0, 1.0, 1.0)
    near_micrometre = [replace(v, voxel=(0.95, 0.95, 1.9), chain=[
        shear, v.chain[0], ("calibration", matrix([0.95, 0, 0, 0, 0, 0.95, 0, 0, 0, 0, 1.9, 0]))])
        for v in micrometre_world]
    assert resolution(near_micrometre) == (1.0, 1.0, 1.0)
    halved = [replace(v, chain=[("Affine", matrix([2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0])), *v.chain])
              for v in pixel_world]   # transforms that scale on purpose: a world unit of half a pixel
    assert resolution(halved) == (0.25, 0.25, 0.25)


def test_a_view_missing_in_one_channel_only_is_named(tmp_path):
    """Trial K: a MissingView of channel 1 alone said "12 tiles where channel 0 has 11",
    naming neither the view nor MissingViews; it now names both, and the selection that
    leaves the tile out is read."""
    from dataclasses import replace
    views = [replace(v, setup=v.setup + 4 * c, channel=c) for c in (0, 1) for v in scenario("grid")]
    xml = write_project(tmp_path / "p", views, "tiff")

    def missing(root):
        ET.SubElement(root.find("SequenceDescription/MissingViews"), "MissingView",
                      timepoint="0", setup="6")
    edit(xml, missing)
    with pytest.raises(TileError, match=r"channel 1 has no view of tile 2, angle 0, illumination 0 "
                                        r"at timepoint 0, which channel 0 has \(view setup 2\): "
                                        r"MissingViews, or input.views\?"):
        read_project(str(xml))
    kept = read_project(str(xml), views={"tile": [0, 1, 3]})
    assert [len(ts) for ts in kept.tiles[0]] == [3, 3]
    # review G: channels with as many views but their own tile ids are read as before
    own_ids = [replace(v, setup=v.setup + 4 * c, channel=c, tile=v.tile + 4 * c)
               for c in (0, 1) for v in scenario("grid")]
    project = read_project(str(write_project(tmp_path / "own", own_ids, "tiff")))
    assert [len(ts) for ts in project.tiles[0]] == [4, 4]
