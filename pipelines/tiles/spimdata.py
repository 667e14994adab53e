"""The elements of a SpimData2 (BigStitcher / BigDataViewer) XML, each read and checked
on its own: the view setups, timepoints, missing views, image loader, view registrations
and channel names. `pipelines.tiles.bigstitcher` makes tiles of them. Every problem is
one TileError naming the XML and the element."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import TileError
from pipelines.storage.documents import read_document
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import join as join_uri
from pipelines.tiles.model import COORDINATE_LIMIT, ID_LIMIT, RESOLUTION_RANGE
from pipelines.transforms import Affine, as_affine, compose

# ImageLoader format → our loader (pipelines.tiles.Tile.loader)
IMAGE_LOADERS = {"spimreconstruction.filemap2": "tiff", "bdv.n5": "n5", "bdv.hdf5": "hdf5",
                 "bdv.multimg.zarr": "zarr"}
ATTRIBUTES = ("illumination", "channel", "tile", "angle")
# a whole number as Java's Integer.parseInt takes it: ASCII digits, one optional minus
# (str.isdigit also takes "²" and "١", which int() refuses or reads otherwise)
WHOLE = re.compile(r"-?[0-9]+")
# µm per voxelSize unit (compared in lower case; "µm" with the micro sign or the Greek
# mu). "pixel", BigDataViewer's default when nothing was calibrated, counts as µm; any
# other unit is refused rather than taken as µm, which would scale the output's metadata
UNITS = {"µm": 1.0, "μm": 1.0, "um": 1.0, "micrometer": 1.0, "micrometre": 1.0, "micron": 1.0,
         "microns": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "mm": 1e3,
         "millimeter": 1e3, "millimetre": 1e3, "cm": 1e4, "m": 1e6,
         "pixel": 1.0, "pixels": 1.0, "px": 1.0}
# Timepoints a project may list: each is a row of tiles in the plan, and a range or
# pattern is expanded into a list before views are selected.
MAX_TIMEPOINTS = 100_000



@dataclass(frozen=True)
class Setup:
    """One ViewSetup of a BigStitcher project: its size, voxel size and attributes (channel,
    tile, angle, illumination ids)."""

    id: int
    name: str
    size: tuple[int, int, int]
    voxel: tuple[float, float, float]
    unit: str
    attributes: dict


def parse(source: str, s3) -> ET.Element:
    text = read_document(source, s3, TileError, "BigStitcher project", "input.tiles")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise TileError(f"{source}: not valid XML: {e}") from None
    if root.tag != "SpimData":
        raise TileError(f"{source}: expected a BigStitcher / BigDataViewer project (root element "
                        f"SpimData), found <{root.tag}>")
    return root


def _whole(element: ET.Element, name: str, source: str, default: int | None = None) -> int:
    """The whole-number attribute `name` of `element` (`default` when absent); TileError
    naming the element and the value otherwise."""
    text = element.get(name)
    if text is None and default is not None:
        return default
    value = (text or "").strip()
    if not WHOLE.fullmatch(value):
        raise TileError(f"{source}: <{element.tag}> attribute {name} must be a whole number, "
                        f"found {text!r}")
    return int(value)


def child_element(element: ET.Element, name: str, source: str) -> ET.Element:
    found = element.find(name)
    if found is None:
        raise TileError(f"{source}: <{element.tag}> has no <{name}>")
    return found


def _text(element: ET.Element, name: str, source: str) -> str:
    return (child_element(element, name, source).text or "").strip()


def _numbers(text: str, count: int, what: str, source: str, integer: bool = False) -> tuple:
    try:
        values = [int(v) if integer else float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        kind = "whole numbers" if integer else "finite numbers"
        raise TileError(f"{source}: {what} must be {count} {kind}, found {text!r}")
    return tuple(values)


def _path(element: ET.Element, base: str, source: str) -> str:
    """A spimdata path element: type "absolute" as written, else relative to `base`."""
    text = (element.text or "").strip()
    if not text:
        raise TileError(f"{source}: <{element.tag}> is empty")
    if element.get("type") == "absolute" or "://" in text or Path(text).is_absolute():
        return text
    if is_remote(base):
        return join_uri(base, text)
    return str((Path(base) / text).resolve())


def base_path(root: ET.Element, folder: str, source: str) -> str:
    element = root.find("BasePath")
    if element is None or not (element.text or "").strip():
        return folder
    return _path(element, folder, source)


def view_setups(sequence: ET.Element, source: str) -> dict[int, Setup]:
    group = child_element(sequence, "ViewSetups", source)
    setups: dict[int, Setup] = {}
    for element in group.findall("ViewSetup"):
        id_text = _text(element, "id", source)
        if not WHOLE.fullmatch(id_text) or not 0 <= int(id_text) < ID_LIMIT:
            raise TileError(f"{source}: a ViewSetup id must be a whole number below {ID_LIMIT}, "
                            f"found {id_text!r}")
        where = f"{source}: ViewSetup {id_text}"
        size = _numbers(_text(element, "size", where), 3, "<size>", where, integer=True)
        if not all(0 < n <= COORDINATE_LIMIT for n in size):
            raise TileError(f"{where}: <size> must be positive, up to 2^40, found {list(size)}")
        voxel_element = element.find("voxelSize")
        voxel, unit = (1.0, 1.0, 1.0), "pixel"
        if voxel_element is not None:
            voxel = _numbers(_text(voxel_element, "size", where), 3, "<voxelSize><size>", where)
            unit = (voxel_element.findtext("unit") or "pixel").strip()
            if unit.lower() not in UNITS:
                raise TileError(f"{where}: <voxelSize><unit> {unit!r} is not a known unit; "
                                f"known: µm, nm, mm, cm, m (and their names), pixel")
            low, high = RESOLUTION_RANGE
            if not all(low <= v <= high for v in voxel):
                raise TileError(f"{where}: <voxelSize> must be positive, from {low:g} to "
                                f"{high:g}, found {list(voxel)}")
        attributes = {}
        found = element.find("attributes")
        for child in (found if found is not None else []):
            value = (child.text or "").strip()
            if WHOLE.fullmatch(value):
                attributes[child.tag] = int(value)
            elif child.tag in ATTRIBUTES:   # an id of <Attributes name="…">: a view would
                # fall back to channel (tile, …) 0 without a word
                raise TileError(f"{where}: <attributes><{child.tag}> must be a whole number "
                                f"(an id of <Attributes name=\"{child.tag}\">), found {value!r}")
        setup = Setup(int(id_text), element.findtext("name") or id_text, size, voxel, unit, attributes)
        if setup.id in setups:
            raise TileError(f"{source}: ViewSetup id {setup.id} appears twice")
        setups[setup.id] = setup
    if not setups:
        raise TileError(f"{source}: <ViewSetups> holds no ViewSetup")
    return setups


def timepoints(sequence: ET.Element, source: str) -> list[int]:
    element = child_element(sequence, "Timepoints", source)
    kind = element.get("type", "")
    where = f"{source}: <Timepoints type=\"{kind}\">"
    if kind == "range":
        first = _numbers(_text(element, "first", where), 1, "<first>", where, integer=True)[0]
        last = _numbers(_text(element, "last", where), 1, "<last>", where, integer=True)[0]
        if last < first:   # trial AM: "no views left to fuse" said nothing of why
            raise TileError(f"{where}: <last> {last} is below <first> {first}: no timepoint")
        return _timepoint_ids(range(first, last + 1), where)
    if kind == "list":
        ids = [e.text or "" for e in element.findall("id")] or \
            (element.findtext("list") or "").replace(",", " ").split()
        try:
            listed = sorted({int(v) for v in ids})
        except ValueError:
            raise TileError(f"{where}: ids must be whole numbers, found {ids!r}") from None
        if not listed:   # trial V: "no views left to fuse" said nothing of why
            raise TileError(f"{where}: lists no timepoint ids (expected <id> elements or a "
                            f"<list> of ids)")
        return _timepoint_ids(listed, where)
    if kind == "pattern":
        return _pattern(element.findtext("integerpattern") or "", where)
    raise TileError(f"{where}: unknown type; expected range, list or pattern")


def _pattern(text: str, where: str) -> list[int]:
    """spimdata's integer pattern: comma-separated "a", "a-b" or "a-b:step"."""
    values: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+)(?:\s*:\s*(\d+))?)?", part)
        if not match:
            raise TileError(f"{where}: cannot read the pattern {text!r} (expected e.g. \"0-10:2, 12\")")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        step = int(match.group(3)) if match.group(3) else 1
        if step == 0:   # trial AE: was read as 1
            raise TileError(f"{where}: the pattern {text!r} has a step of 0")
        values.update(_timepoint_ids(range(first, last + 1, step), where))
    if not values:
        raise TileError(f"{where}: the pattern lists no timepoint")
    return _timepoint_ids(sorted(values), where)


def _timepoint_ids(ids, where: str) -> list[int]:
    """Ascending `ids` (a range is checked before it is expanded) as a list, if they are
    from 0 to ID_LIMIT - 1 and at most MAX_TIMEPOINTS of them."""
    first, last = (ids[0], ids[-1]) if ids else (0, 0)
    if not 0 <= first <= last < ID_LIMIT:
        raise TileError(f"{where}: timepoint ids must be whole numbers from 0 to "
                        f"{ID_LIMIT - 1}, found {first} to {last}")
    if len(ids) > MAX_TIMEPOINTS:
        raise TileError(f"{where}: lists {len(ids)} timepoints; at most {MAX_TIMEPOINTS} are "
                        f"supported")
    return list(ids)


def missing_views(sequence: ET.Element, source: str) -> set[tuple[int, int]]:
    found = sequence.find("MissingViews")
    if found is None:
        return set()
    other = next((e for e in found if e.tag != "MissingView"), None)
    if other is not None:   # trial V: a misspelt <View> left the view fused, without a word
        raise TileError(f"{source}: <MissingViews> holds <{other.tag}>; expected <MissingView "
                        f"timepoint=\"…\" setup=\"…\"/> elements")
    return {(_whole(e, "timepoint", source, -1), _whole(e, "setup", source, -1))
            for e in found.findall("MissingView")}


def loader_format(element: ET.Element, source: str) -> str:
    fmt = element.get("format", "")
    if fmt not in IMAGE_LOADERS:
        raise TileError(f"{source}: image loader {fmt!r} is not supported; supported: "
                        f"{', '.join(IMAGE_LOADERS)} (resave the project in BigStitcher as N5, "
                        f"HDF5 or OME-Zarr to use another)")
    return fmt


def registrations(root: ET.Element, source: str) -> dict[tuple[int, int], Affine]:
    group = child_element(root, "ViewRegistrations", source)
    out: dict[tuple[int, int], Affine] = {}
    for element in group.findall("ViewRegistration"):
        try:
            key = int(element.get("timepoint", "")), int(element.get("setup", ""))
        except ValueError:
            raise TileError(f"{source}: a ViewRegistration needs whole-number timepoint and "
                            f"setup attributes") from None
        where = f"{source}: ViewRegistration of setup {key[1]}, timepoint {key[0]}"
        chain = []
        listed = element.findall("ViewTransform")
        for n, transform in enumerate(listed, start=1):   # counted as people count (trial AE)
            if transform.get("type", "affine") != "affine":
                raise TileError(f"{where}: ViewTransform {n} of {len(listed)} has type "
                                f"{transform.get('type')!r}; only affine transforms are supported")
            chain.append(as_affine(_numbers(_text(transform, "affine", where), 12,
                                            f"ViewTransform {n} of {len(listed)} <affine>", where)))
        out[key] = compose(*chain) if chain else compose()
    return out


def locator(fmt: str, element: ET.Element, base: str, source: str):
    """A function (setup, timepoint, where) → (file or container, dataset) for the loader."""
    if fmt == "spimreconstruction.filemap2":
        files = {}
        for mapping in child_element(element, "files", source).findall("FileMapping"):
            key = _whole(mapping, "timepoint", source, -1), _whole(mapping, "view_setup", source, -1)
            series, channel = _whole(mapping, "series", source, 0), _whole(mapping, "channel", source, 0)
            files[key] = (_path(child_element(mapping, "file", source), base, source), series, channel)

        def tiff(setup: int, t: int, where: str) -> tuple[str, str]:
            if (t, setup) not in files:
                raise TileError(f"{where}: no FileMapping names its file")
            file, series, channel = files[(t, setup)]
            if channel != 0:
                raise TileError(f"{where}: {file} channel {channel}: only files that hold one "
                                f"channel per stack are supported")
            return file, str(series)
        return tiff
    tag = {"bdv.n5": "n5", "bdv.hdf5": "hdf5", "bdv.multimg.zarr": "zarr"}[fmt]
    container = _path(child_element(element, tag, source), base, source)
    if fmt == "bdv.n5":
        return lambda s, t, where: (container, f"setup{s}/timepoint{t}/s0")
    if fmt == "bdv.hdf5":
        return lambda s, t, where: (container, f"t{t:05d}/s{s:02d}/0/cells")
    groups = {}
    for group in child_element(element, "zgroups", source).findall("zgroup"):
        key = _whole(group, "timepoint", source, -1), _whole(group, "setup", source, -1)
        groups[key] = group.get("path") or (group.findtext("path") or "").strip()

    def zarr(setup: int, t: int, where: str) -> tuple[str, str]:
        if not groups.get((t, setup)):
            raise TileError(f"{where}: no zgroup names its OME-Zarr group")
        return container, groups[(t, setup)]
    return zarr


def channel_names(sequence: ET.Element, channels: list[int]) -> tuple[str, ...]:
    names = {}
    for group in sequence.iter("Attributes"):
        if group.get("name") == "channel":
            for channel in group:
                id_text = (channel.findtext("id") or "").strip()
                if WHOLE.fullmatch(id_text):
                    names[int(id_text)] = (channel.findtext("name") or id_text).strip()
    return tuple(names.get(c, f"channel {c}") for c in channels)
