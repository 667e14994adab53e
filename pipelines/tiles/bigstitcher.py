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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import TileError
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import parent as parent_uri
from pipelines.tiles import spimdata
from pipelines.tiles.model import (
    COORDINATE_LIMIT,
    Tile,
    TileSet,
    placement,
    tile_type_of,
)
from pipelines.tiles.readers import inspect_view
from pipelines.tiles.spimdata import IMAGE_LOADERS, UNITS, Setup
from pipelines.transforms import determinant, is_singular, singularity

WORLD_UNIT_TOLERANCE = 0.05   # how far an affine refinement may scale a calibrated voxel
SHEAR_LIMIT = 0.25            # how far a shear may lengthen an x pixel (`_world_unit`)


def is_project(path: str) -> bool:
    """Whether `input.tiles` names a BigStitcher project (an .xml file) rather than a tile JSON."""
    return str(path).lower().endswith(".xml")


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
    root = spimdata.parse(source, s3)
    folder = parent_uri(source) if is_remote(source) else str(Path(source).resolve().parent)
    base = spimdata.base_path(root, folder, source)
    sequence = spimdata.child_element(root, "SequenceDescription", source)
    setups = spimdata.view_setups(sequence, source)
    timepoints = spimdata.timepoints(sequence, source)
    missing = spimdata.missing_views(sequence, source)
    loader_element = spimdata.child_element(sequence, "ImageLoader", source)
    loader = spimdata.loader_format(loader_element, source)
    registrations = spimdata.registrations(root, source)
    locate = spimdata.locator(loader, loader_element, base, source)

    # trial AM: a view whose ViewSetup was deleted (its registration and file kept) was
    # left out without a word, and the part only it covered came out 0
    orphans = sorted({s for t, s in registrations if s not in setups and (t, s) not in missing})
    if orphans:
        more = f" and {len(orphans) - 1} more" if len(orphans) > 1 else ""
        raise TileError(f"{source}: ViewRegistrations name view setup {orphans[0]}{more}, which "
                        f"ViewSetups does not hold (a setup removed from one but not the other); "
                        f"add its ViewSetup, or remove its ViewRegistrations to leave it out")
    chosen = {k: {int(v) for v in ids} for k, ids in (views or {}).items()}
    _check_chosen_exist(chosen, setups, timepoints, source)
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
                raise TileError(f"{where}: its ViewTransforms compose to a singular or nearly "
                                f"singular affine ({singularity(affine)}): it flattens the view")
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
    names = spimdata.channel_names(sequence, kept_c)
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


def _check_chosen_exist(chosen: dict[str, set[int]], setups: dict[int, Setup],
                        timepoints: list[int], source: str) -> None:
    """Every id `input.views` lists is one of the project's (trial AE: `setup = [0, 99]`
    fused setup 0 alone, without a word: a typo dropped views silently)."""
    for key, ids in chosen.items():
        known = (set(setups) if key == "setup" else set(timepoints) if key == "timepoint"
                 else {s.attributes.get(key, 0) for s in setups.values()})
        unknown = sorted(ids - known)
        if unknown:
            listed = sorted(known)
            raise TileError(f"{source}: input.views names {key} {_ids(unknown)}, which the "
                            f"project does not have (its {key} ids: {_ids(listed)})")


def _ids(values: list[int], shown: int = 12) -> str:
    """A list of ids for a message: the first `shown` of a long one, and how many more."""
    more = f" and {len(values) - shown} more" if len(values) > shown else ""
    return ", ".join(map(str, values[:shown])) + more


def _selected(chosen: dict[str, set[int]], setup: Setup, t: int) -> bool:
    values = {"setup": setup.id, "timepoint": t, **setup.attributes}
    return all(values.get(k, 0) in ids for k, ids in chosen.items())


def _world_unit(setups: dict[int, Setup], rows: dict) -> float:
    """µm per world unit. BigStitcher's world unit is the calibrated x pixel (its
    calibration is diag(1, 1, zres/xres)): the x voxel size of the first view used. A
    project whose transforms scale an x pixel to its size in µm (BigDataViewer's Fiji
    export, and this tool's bdv layout) has µm as its world unit instead (trial K: such a
    project was read as if 1 µm were one x pixel, and its output labelled with that
    pixel's size). Each view tells the unit by the volume its transform gives a voxel:
    the cube root of its voxel's volume in µm³ over the determinant (a calibration
    diag(1, 1, 3) of 0.4 x 0.4 x 1.2 µm voxels: 0.4; diag(0.4, 0.4, 1.2): 1), which
    rotations and shears leave alone (trial AE: the length of an x pixel, used before,
    grew 6 % under a shear y += 0.35 x and labelled a 0.4 µm output 0.378 µm). The median
    decides; within WORLD_UNIT_TOLERANCE of the first view's x voxel size or of its
    length unit (µm for a setup in µm), the nearer of them is taken (an affine refinement
    scales a little), else the median itself (transforms that scale the pixels on
    purpose). A view whose volume figure is more than SHEAR_LIMIT from the length its
    transform gives an x pixel tells that length instead: its z calibration does not
    match voxelSize (reset, or typed by hand), which spoils the volume, and may land it
    on a candidate by chance (review: 0.5 x 0.5 x 8 µm voxels under diag(1, 1, 2) had
    told 1 µm). A view placed by a translation alone tells its x voxel size."""
    views = sorted((v for row in rows.values() for v in row), key=lambda v: v.index)
    first = setups[views[0].index]
    candidates = (first.voxel[0] * UNITS[first.unit.lower()], UNITS[first.unit.lower()])
    told = []
    for v in views:
        setup = setups[v.index]
        size = [n * UNITS[setup.unit.lower()] for n in setup.voxel]
        if v.transform is None:
            told.append(size[0])
            continue
        volume = (math.prod(size) / abs(determinant(v.transform))) ** (1 / 3)
        length = size[0] / math.hypot(*(v.transform[4 * r] for r in range(3)))
        told.append(volume if abs(math.log(volume / length)) <= math.log(1 + SHEAR_LIMIT) else length)
    unit = float(f"{np.median(told):.9g}")   # a cube root's last bits are not a size
    nearest = min(candidates, key=lambda c: abs(math.log(unit / c)))
    return nearest if abs(unit / nearest - 1) <= WORLD_UNIT_TOLERANCE else unit
