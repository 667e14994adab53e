"""Read a BigStitcher / BigDataViewer project (SpimData2 XML) as tiles with affines.

What is read (element names as spimdata writes them):
- `BasePath` (type "relative": to the XML's folder; "absolute" as written);
- `SequenceDescription/ImageLoader` by its `format`: `spimreconstruction.filemap2` (one
  TIFF stack per view, `files/FileMapping`), `bdv.n5` (`n5`, datasets
  `setup{s}/timepoint{t}/s0`), `bdv.hdf5` (`hdf5`, datasets `t{ttttt}/s{ss}/0/cells`) and
  `bdv.multimg.zarr` (`zarr` plus one OME-Zarr group per view in `zgroups`);
- `ViewSetups/ViewSetup`: id, name, size (x y z), voxelSize (unit, size) and attributes
  (illumination, channel, tile, angle); `ViewSetups/Attributes` for the channel names;
- `Timepoints` of type `range` (first, last), `list` (ids) or `pattern` ("0-10:2, 12");
- `MissingViews/MissingView` (timepoint, setup): views that do not exist;
- `ViewRegistrations/ViewRegistration`: the `affine` of every `ViewTransform`, composed as
  spimdata does: world = T0 · T1 · … · Tn · pixel (the last one, usually the
  calibration, applies to the pixels first).

World units are BigStitcher's: pixel units of x after calibration; one world unit is the
x voxel size of the views (µm). Views of one timepoint and channel (tiles, angles,
illuminations) become one TileSet, fused together; `views` selects a subset by attribute.
Every problem is one TileError naming the XML and the element.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import TileError
from pipelines.storage.documents import read_document
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import join as join_uri
from pipelines.storage.uri import parent as parent_uri
from pipelines.tiles.model import (
    COORDINATE_LIMIT,
    ID_LIMIT,
    RESOLUTION_RANGE,
    Tile,
    TileSet,
    placement,
    tile_type_of,
)
from pipelines.tiles.readers import inspect_view
from pipelines.transforms import Affine, as_affine, compose, determinant, is_singular

# ImageLoader format → our loader (pipelines.tiles.Tile.loader)
IMAGE_LOADERS = {"spimreconstruction.filemap2": "tiff", "bdv.n5": "n5", "bdv.hdf5": "hdf5",
                 "bdv.multimg.zarr": "zarr"}
ATTRIBUTES = ("illumination", "channel", "tile", "angle")
SELECTABLE = ("setup", "timepoint") + ATTRIBUTES    # keys of input.views
# a whole number as Java's Integer.parseInt takes it: ASCII digits, one optional minus
# (str.isdigit also takes "²" and "١", which int() refuses or reads otherwise)
WHOLE = re.compile(r"-?[0-9]+")
WORLD_UNIT_TOLERANCE = 0.05   # how far an affine refinement may scale a calibrated x pixel
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


def is_project(path: str) -> bool:
    """Whether `input.tiles` names a BigStitcher project (an .xml file) rather than a tile JSON."""
    return str(path).lower().endswith(".xml")


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


@dataclass(frozen=True)
class Project:
    """What the export needs of a project: one TileSet per timepoint, per channel."""

    tiles: tuple[tuple[TileSet, ...], ...]
    timepoints: tuple[int, ...]
    channels: tuple[int, ...]
    channel_names: tuple[str, ...]
    loader: str        # the ImageLoader format
    # per timepoint, per channel: the (timepoint id, setup id) of each tile number
    view_ids: tuple[tuple[tuple[tuple[int, int], ...], ...], ...] = ()


def read_project(path: str, s3=None, views: dict | None = None) -> Project:
    """Parse a BigStitcher XML (a path or s3:// URI) into tiles placed by their affines
    (world coordinates); `views` ({attribute: [ids]}) keeps only the matching views."""
    source = str(path)
    root = _parse(source, s3)
    folder = parent_uri(source) if is_remote(source) else str(Path(source).resolve().parent)
    base = _base_path(root, folder, source)
    sequence = _child(root, "SequenceDescription", source)
    setups = _setups(sequence, source)
    timepoints = _timepoints(sequence, source)
    missing = _missing(sequence, source)
    loader_element = _child(sequence, "ImageLoader", source)
    loader = _loader(loader_element, source)
    registrations = _registrations(root, source)
    locate = _locator(loader, loader_element, base, source)

    chosen = {k: {int(v) for v in ids} for k, ids in (views or {}).items()}
    rows: dict[tuple[int, int], list[Tile]] = {}
    for t in timepoints:
        for s in setups.values():
            if (t, s.id) in missing or not _selected(chosen, s, t):
                continue
            where = f"{source}: view setup {s.id}, timepoint {t}"
            if (t, s.id) not in registrations:
                raise TileError(f"{where}: no ViewRegistration (every view that is not in "
                                f"MissingViews needs one)")
            affine = registrations[(t, s.id)]
            if not all(abs(v) <= COORDINATE_LIMIT for v in affine):   # inf once they overflow
                raise TileError(f"{where}: its ViewTransforms compose to an affine with numbers "
                                f"beyond ±2^40: {list(affine)}")
            if is_singular(affine):
                raise TileError(f"{where}: its ViewTransforms compose to a singular affine "
                                f"(determinant {determinant(affine):.3g})")
            file, dataset = locate(s.id, t, where)
            position, transform = placement(affine)
            tile = Tile(s.id, file, position, s.size, type="GRAY16", transform=transform,
                        loader=IMAGE_LOADERS[loader], dataset=dataset,
                        label=f"view setup {s.id}, timepoint {t}")
            rows.setdefault((t, int(s.attributes.get("channel", 0))), []).append(tile)
    if not rows:
        raise TileError(f"{source}: no views left to fuse" +
                        (f" after input.views = {views}" if views else ""))
    rows = {key: _typed(views_tc, source, s3) for key, views_tc in rows.items()}
    _check_same_views(rows, source)
    _check_same_channels(rows, setups, source)
    kept_t = sorted({t for t, _ in rows})
    kept_c = sorted({c for _, c in rows})
    unit = _world_unit(setups, rows)
    tiles, ids = [], []
    for t in kept_t:
        row, id_row = [], []
        for c in kept_c:
            views_tc = rows.get((t, c), [])
            if not views_tc:
                raise TileError(f"{source}: timepoint {t} has no views of channel {c}; every "
                                f"timepoint needs every channel (select with input.views)")
            # tiles are numbered by (tile, angle, illumination, setup): the same numbers in
            # every channel and timepoint, as fusion looks tiles up by number
            ranked = sorted(views_tc, key=lambda v: (_rank_key(setups[v.index]), v.index))
            numbered = tuple(replace(v, index=n, pixel_resolution=(unit, unit, unit))
                             for n, v in enumerate(ranked))
            row.append(TileSet(numbered, source=f"{source} (timepoint {t}, channel {c})", channel_id=c))
            id_row.append(tuple((t, v.index) for v in ranked))
        tiles.append(tuple(row))
        ids.append(tuple(id_row))
    names = _channel_names(sequence, kept_c)
    return Project(tuple(tiles), tuple(kept_t), tuple(kept_c), names, loader, tuple(ids))


def _inspect(view: Tile, source: str, s3) -> tuple[tuple[int, int, int], np.dtype]:
    """inspect_view, a problem with the view's file also naming the project and the view
    (the file alone does not say which view of which project wanted it)."""
    try:
        return inspect_view(view, s3)
    except TileError as e:
        raise TileError(f"{source}: {view.name}: {e}") from None


def _rank_key(setup: Setup) -> tuple[int, ...]:
    return tuple(setup.attributes.get(a, 0) for a in ("tile", "angle", "illumination"))


def _typed(views: list[Tile], source: str, s3) -> list[Tile]:
    """The views with the pixel type their files hold, each file's header opened once (in
    parallel: on shared filesystems and object stores this is latency-bound)."""
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(partial(_inspect, source=source, s3=s3), views))
    typed = []
    for view, (shape, dtype) in zip(views, found):
        where = f"{view.path}" + (f" ({view.dataset})" if view.loader != "tiff" else "")
        if shape != view.size:
            raise TileError(f"{where}: {view.name} has <size> {list(view.size)} in {source} but "
                            f"the file holds {list(shape)} (x, y, z)")
        try:
            kind = tile_type_of(dtype)
        except ValueError:
            raise TileError(f"{where}: {view.name} holds {dtype} pixels; supported: uint8, "
                            f"uint16, float32") from None
        typed.append(replace(view, type=kind))
    mixed = next((v for v in typed if v.type != typed[0].type), None)
    if mixed is not None:   # fused into one output type, one of them would be clipped
        first = typed[0]
        raise TileError(f"{source}: {mixed.name} holds {mixed.dtype} pixels but {first.name} "
                        f"holds {first.dtype}; the views of a channel must have one pixel type "
                        f"(select views of one type with input.views)")
    return typed


def _check_same_views(rows: dict[tuple[int, int], list[Tile]], source: str) -> None:
    """Every timepoint of a channel has the views of the same setups: a view missing at
    one timepoint only is named, not found later as tiles that differ."""
    by_channel: dict[int, dict[int, set[int]]] = {}
    for (t, c), views in rows.items():
        by_channel.setdefault(c, {})[t] = {v.index for v in views}
    for c, setups_at in by_channel.items():
        missing = _first_missing(setups_at)
        if missing:
            t, absent, other = missing
            raise TileError(f"{source}: view setup {absent} (channel {c}) has a view at "
                            f"timepoint {other} but none at timepoint {t} (MissingViews, "
                            f"or input.views); every timepoint must have the same views: "
                            f"select them with input.views")


def _check_same_channels(rows: dict[tuple[int, int], list[Tile]], setups: dict[int, Setup],
                         source: str) -> None:
    """Where the channels of a timepoint hold different numbers of views, the view one
    lacks is named by its (tile, angle, illumination) (trial K: "12 tiles where channel 0
    has 11", naming neither the view nor MissingViews). Channels with as many views pass:
    their views are numbered by rank, and a converter may give each channel its own tile
    ids or illumination."""
    by_time: dict[int, dict[int, dict[tuple[int, ...], int]]] = {}
    for (t, c), views in rows.items():
        by_time.setdefault(t, {})[c] = {_rank_key(setups[v.index]): v.index for v in views}
    for t, channels in sorted(by_time.items()):
        if len({len(keys) for keys in channels.values()}) == 1:
            continue   # as many views in each: numbered by rank, whatever their attributes
        missing = _first_missing({c: set(keys) for c, keys in channels.items()})
        if missing:
            c, absent, other = missing
            tile, angle, illumination = absent
            raise TileError(
                f"{source}: channel {c} has no view of tile {tile}, angle {angle}, "
                f"illumination {illumination} at timepoint {t}, which channel {other} has "
                f"(view setup {channels[other][absent]}): MissingViews, or input.views? "
                f"Every channel must have the same views: select them with input.views "
                f"(e.g. leave that tile out, or export the channels one by one)")


def _first_missing(groups: dict[int, set]) -> tuple[int, Any, int] | None:
    """Of groups that should hold the same members: the first group (in order) lacking
    one, the smallest member it lacks, and the first group that holds it; None when all
    hold the same."""
    union = set().union(*groups.values())
    for group, present in sorted(groups.items()):
        if present != union:
            absent = min(union - present)
            return group, absent, min(g for g, members in groups.items() if absent in members)
    return None


def _parse(source: str, s3) -> ET.Element:
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


def _child(element: ET.Element, name: str, source: str) -> ET.Element:
    found = element.find(name)
    if found is None:
        raise TileError(f"{source}: <{element.tag}> has no <{name}>")
    return found


def _text(element: ET.Element, name: str, source: str) -> str:
    return (_child(element, name, source).text or "").strip()


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


def _base_path(root: ET.Element, folder: str, source: str) -> str:
    element = root.find("BasePath")
    if element is None or not (element.text or "").strip():
        return folder
    return _path(element, folder, source)


def _setups(sequence: ET.Element, source: str) -> dict[int, Setup]:
    group = _child(sequence, "ViewSetups", source)
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


def _timepoints(sequence: ET.Element, source: str) -> list[int]:
    element = _child(sequence, "Timepoints", source)
    kind = element.get("type", "")
    where = f"{source}: <Timepoints type=\"{kind}\">"
    if kind == "range":
        first = _numbers(_text(element, "first", where), 1, "<first>", where, integer=True)[0]
        last = _numbers(_text(element, "last", where), 1, "<last>", where, integer=True)[0]
        return _timepoint_ids(range(first, last + 1), where)
    if kind == "list":
        ids = [e.text or "" for e in element.findall("id")] or \
            (element.findtext("list") or "").replace(",", " ").split()
        try:
            listed = sorted({int(v) for v in ids})
        except ValueError:
            raise TileError(f"{where}: ids must be whole numbers, found {ids!r}") from None
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
        values.update(_timepoint_ids(range(first, last + 1, max(step, 1)), where))
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


def _missing(sequence: ET.Element, source: str) -> set[tuple[int, int]]:
    found = sequence.find("MissingViews")
    if found is None:
        return set()
    return {(_whole(e, "timepoint", source, -1), _whole(e, "setup", source, -1))
            for e in found.findall("MissingView")}


def _loader(element: ET.Element, source: str) -> str:
    fmt = element.get("format", "")
    if fmt not in IMAGE_LOADERS:
        raise TileError(f"{source}: image loader {fmt!r} is not supported; supported: "
                        f"{', '.join(IMAGE_LOADERS)} (resave the project in BigStitcher as N5, "
                        f"HDF5 or OME-Zarr to use another)")
    return fmt


def _registrations(root: ET.Element, source: str) -> dict[tuple[int, int], Affine]:
    group = _child(root, "ViewRegistrations", source)
    out: dict[tuple[int, int], Affine] = {}
    for element in group.findall("ViewRegistration"):
        try:
            key = int(element.get("timepoint", "")), int(element.get("setup", ""))
        except ValueError:
            raise TileError(f"{source}: a ViewRegistration needs whole-number timepoint and "
                            f"setup attributes") from None
        where = f"{source}: ViewRegistration of setup {key[1]}, timepoint {key[0]}"
        chain = []
        for n, transform in enumerate(element.findall("ViewTransform")):
            if transform.get("type", "affine") != "affine":
                raise TileError(f"{where}: ViewTransform {n} has type {transform.get('type')!r}; "
                                f"only affine transforms are supported")
            chain.append(as_affine(_numbers(_text(transform, "affine", where), 12,
                                            f"ViewTransform {n} <affine>", where)))
        out[key] = compose(*chain) if chain else compose()
    return out


def _locator(fmt: str, element: ET.Element, base: str, source: str):
    """A function (setup, timepoint, where) → (file or container, dataset) for the loader."""
    if fmt == "spimreconstruction.filemap2":
        files = {}
        for mapping in _child(element, "files", source).findall("FileMapping"):
            key = _whole(mapping, "timepoint", source, -1), _whole(mapping, "view_setup", source, -1)
            series, channel = _whole(mapping, "series", source, 0), _whole(mapping, "channel", source, 0)
            files[key] = (_path(_child(mapping, "file", source), base, source), series, channel)

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
    container = _path(_child(element, tag, source), base, source)
    if fmt == "bdv.n5":
        return lambda s, t, where: (container, f"setup{s}/timepoint{t}/s0")
    if fmt == "bdv.hdf5":
        return lambda s, t, where: (container, f"t{t:05d}/s{s:02d}/0/cells")
    groups = {}
    for group in _child(element, "zgroups", source).findall("zgroup"):
        key = _whole(group, "timepoint", source, -1), _whole(group, "setup", source, -1)
        groups[key] = group.get("path") or (group.findtext("path") or "").strip()

    def zarr(setup: int, t: int, where: str) -> tuple[str, str]:
        if not groups.get((t, setup)):
            raise TileError(f"{where}: no zgroup names its OME-Zarr group")
        return container, groups[(t, setup)]
    return zarr


def _selected(chosen: dict[str, set[int]], setup: Setup, t: int) -> bool:
    values = {"setup": setup.id, "timepoint": t, **setup.attributes}
    return all(values.get(k, 0) in ids for k, ids in chosen.items())


def _world_unit(setups: dict[int, Setup], rows: dict) -> float:
    """µm per world unit. BigStitcher's world unit is the calibrated x pixel (its
    calibration is diag(1, 1, zres/xres)): the x voxel size of the first view used. A
    project whose transforms scale an x pixel to its size in µm (BigDataViewer's Fiji
    export, and this tool's bdv layout) has µm as its world unit instead (trial K: such a
    project was read as if 1 µm were one x pixel, and its output labelled with that
    pixel's size). Each view tells the unit as its x voxel size over the length its
    transform gives an x pixel; the median decides, and within WORLD_UNIT_TOLERANCE of the
    first view's x voxel size (an affine refinement scales a little) that is taken."""
    views = sorted((v for row in rows.values() for v in row), key=lambda v: v.index)
    first = setups[views[0].index]
    pixel = first.voxel[0] * UNITS[first.unit.lower()]
    told = []
    for v in views:
        setup = setups[v.index]
        length = 1.0 if v.transform is None else math.hypot(*(v.transform[4 * r] for r in range(3)))
        told.append(setup.voxel[0] * UNITS[setup.unit.lower()] / length)
    unit = float(np.median(told))
    return pixel if abs(unit / pixel - 1) <= WORLD_UNIT_TOLERANCE else unit


def _channel_names(sequence: ET.Element, channels: list[int]) -> tuple[str, ...]:
    names = {}
    for group in sequence.iter("Attributes"):
        if group.get("name") == "channel":
            for channel in group:
                id_text = (channel.findtext("id") or "").strip()
                if WHOLE.fullmatch(id_text):
                    names[int(id_text)] = (channel.findtext("name") or id_text).strip()
    return tuple(names.get(c, f"channel {c}") for c in channels)
