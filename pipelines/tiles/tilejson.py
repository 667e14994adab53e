"""Read and write stitching-spark tile configuration JSON.

The format is a JSON list of objects::

    {"index": 0, "file": "tile-0.tif", "position": [x, y, z], "size": [x, y, z],
     "pixelResolution": [x, y, z], "type": "GRAY16"}

`file` is absolute or relative to the JSON's folder; positions are in pixels and may be
fractional. An optional `transform` (an affine from the tile's pixels to stage
coordinates: 3 rows of 4 numbers, x, y, z, as stitching-spark writes it, or the same 12
numbers flat) places the tile instead of `position`. Every problem is reported as one TileError naming the file, tile and field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.errors import TileError
from pipelines.storage.documents import read_json
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import join as join_uri
from pipelines.storage.uri import parent as parent_uri
from pipelines.storage.uri import parse as parse_uri
from pipelines.tiles.model import (
    COORDINATE_LIMIT,
    ID_LIMIT,
    RESOLUTION_RANGE,
    TILE_TYPES,
    Tile,
    TileSet,
    placement,
)
from pipelines.transforms import Affine, as_affine, is_singular, singularity

FIELDS = ("index", "file", "position", "size", "type")


def read_tile_jsons(rows, s3=None) -> tuple[tuple[TileSet, ...], ...]:
    """The tile JSONs of every timepoint's channels (`read_tile_json`); one that is
    missing is named with the job-file key that lists it."""
    key = "input.timepoints" if len(rows) > 1 else "input.tiles"
    sets = tuple(tuple(read_tile_json(p, s3, key) for p in row) for row in rows)
    _each_file_in_one_json(sets, key)
    return sets


def _each_file_in_one_json(sets: tuple[tuple[TileSet, ...], ...], key: str) -> None:
    """Refuse two tile JSONs (channels, timepoints) that read one file: a copy of a JSON
    listed as another channel exported the same pixels twice without a word (trial V;
    the same JSON listed twice is refused in `config.inputs`, two tiles of one JSON in
    `_check_consistent`)."""
    reading: dict[str, str] = {}
    for row in sets:
        for tile_set in row:
            for t in tile_set:
                name = t.path if "://" in t.path else os.path.normpath(t.path)
                other = reading.setdefault(name, tile_set.source)
                if other != tile_set.source:
                    raise TileError(f"{key}: {other} and {tile_set.source} both read "
                                    f"{t.path}: each channel of each timepoint needs its "
                                    f"own tile files (a copy of a JSON listed as another one?)")


def read_tile_json(path: str | os.PathLike, s3=None, key: str = "input.tiles") -> TileSet:
    """Parse and check a tile configuration JSON (a path or s3:// URI); relative tile paths
    become absolute (URIs for a JSON in an object store)."""
    uri = str(path)
    doc = read_json(uri, s3, TileError, "tile configuration", key)
    if is_remote(uri):
        return _tile_set(doc, uri, lambda file: join_uri(parent_uri(uri), file))
    local = Path(str(parse_uri(uri)))   # a file:// URI's path
    folder = local.resolve().parent
    return _tile_set(doc, local, lambda file: str(folder / file))


def _tile_set(doc, source, resolve) -> TileSet:
    """Tiles from a parsed document; `resolve` makes a relative tile path absolute."""
    if not isinstance(doc, list) or not doc:
        found = "an empty list" if isinstance(doc, list) else type(doc).__name__   # trial AM: "found list"
        raise TileError(f"{source}: expected a non-empty JSON list of tiles, found {found}")
    tiles = tuple(_parse_tile(entry, n, source, resolve) for n, entry in enumerate(doc))
    _check_consistent(tiles, source)
    return TileSet(tiles, source=str(source))


def write_tile_json(tiles: Iterable[Tile], path: str | os.PathLike, relative: bool = True) -> None:
    """Write tiles as stitching-spark JSON; with `relative`, file paths relative to the JSON."""
    path = Path(path)
    path.write_text(tile_json_text(tiles, path.resolve().parent if relative else None))


def tile_json_text(tiles: Iterable[Tile], base: Path | None = None) -> str:
    """Tiles as stitching-spark JSON text; local tile files under `base` (a folder) are
    written relative to it, so the JSON and its tiles can move together."""
    doc = []
    for t in tiles:
        file = t.path
        if base is not None and "://" not in file and Path(file).resolve().is_relative_to(base):
            file = str(Path(file).resolve().relative_to(base))
        entry = {
            "index": t.index, "file": file, "position": list(t.position), "size": list(t.size),
            "pixelResolution": list(t.pixel_resolution), "type": t.type,
        }
        if t.transform is not None:
            entry["transform"] = [list(t.transform[r * 4:r * 4 + 4]) for r in range(3)]  # rows, as stitching-spark
        doc.append(entry)
    return json.dumps(doc, indent=2) + "\n"


def _parse_tile(entry: Any, n: int, path, resolve) -> Tile:
    where = f"{path}: tile {n}"
    if not isinstance(entry, dict):
        raise TileError(f"{where}: expected a JSON object, found {entry!r}")
    placed = entry.get("transform") is not None   # stitching-spark's affine places the tile
    for name in FIELDS:
        if name not in entry and not (name == "position" and placed):
            raise TileError(f"{where}: missing field {name!r}")
    index = entry["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < ID_LIMIT:
        raise TileError(f"{where}: field 'index' must be an integer from 0 to {ID_LIMIT - 1}, "
                        f"found {index!r}")
    where = f"{path}: tile {index}"
    file = entry["file"]
    if not isinstance(file, str) or not file:
        raise TileError(f"{where}: field 'file' must be a path string, found {file!r}")
    size = _vector(entry["size"], "size", where, 1, integer=True)
    two_d = len(entry["size"]) == 2   # review H: a 3D tile's [x, y] position read as z 0
    if any(s <= 0 for s in size):
        raise TileError(f"{where}: field 'size' must be positive [x, y, z], found {entry['size']!r}")
    if entry["type"] not in TILE_TYPES:
        raise TileError(f"{where}: field 'type' must be one of {', '.join(TILE_TYPES)}, found {entry['type']!r}")
    # a 2D tile's one slice is as thick as its pixels are wide
    resolution = _vector(entry.get("pixelResolution", [1.0, 1.0, 1.0]), "pixelResolution", where,
                         "x", two_d=two_d)
    low, high = RESOLUTION_RANGE
    if not all(low <= r <= high for r in resolution):
        raise TileError(f"{where}: field 'pixelResolution' must be positive, from {low:g} to "
                        f"{high:g}, found {resolution!r}")
    full = file if "://" in file or Path(file).is_absolute() else resolve(file)
    if placed:   # a position beside it is not read: the transform places the tile
        position, transform = placement(_transform(entry["transform"], where))
    else:
        position, transform = _vector(entry["position"], "position", where, 0.0, two_d=two_d), None
    return Tile(index, full, position, size, resolution, entry["type"], transform)


def _transform(value: Any, where: str) -> Affine:
    """The 'transform' field: 12 numbers (3 rows of 4, x, y, z), flat or as rows, from the
    tile's pixels to stage coordinates; it replaces 'position'."""
    rows = value if isinstance(value, list) and all(isinstance(r, list) for r in value) else None
    flat = [v for r in rows for v in r] if rows is not None and len(rows) == 3 and all(
        len(r) == 4 for r in rows) else value
    ok = isinstance(flat, list) and len(flat) == 12 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= COORDINATE_LIMIT
        for v in flat)
    try:
        affine = as_affine(flat) if ok else None
    except ValueError:
        affine = None
    if affine is None:
        raise TileError(f"{where}: field 'transform' must be an affine of 12 finite numbers "
                        f"within ±2^40 (3 rows of 4, x, y, z; pixel → stage), found {value!r}")
    if is_singular(affine):
        raise TileError(f"{where}: field 'transform' is singular or nearly "
                        f"({singularity(affine)}): it flattens the tile")
    return affine


def _vector(value: Any, name: str, where: str, flat: Any, integer: bool = False,
            two_d: bool = True) -> tuple:
    """A field's x, y, z; [x, y] (stitching-spark's tile JSON of 2D tiles, `two_d`: its
    size is [x, y] too) is [x, y, flat] ("x": the x value)."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, list) and len(value) in ((2, 3) if two_d else (3,)) and all(
        isinstance(v, kinds) and not isinstance(v, bool) for v in value)
    if not ok:
        kind = "integers" if integer else "numbers"
        raise TileError(f"{where}: field {name!r} must be three {kind} [x, y, z] (two, [x, y], "
                        f"for a 2D tile whose 'size' is [x, y] too), found {value!r}")
    if len(value) == 2:
        value = [*value, value[0] if flat == "x" else flat]
    if not all(math.isfinite(v) and abs(v) <= COORDINATE_LIMIT for v in value):
        raise TileError(f"{where}: field {name!r} must be finite numbers within ±2^40 voxels, "
                        f"found {value!r}")
    return tuple(int(v) if integer else float(v) for v in value)


def _check_consistent(tiles: tuple[Tile, ...], path: Path) -> None:
    seen: dict[int, Tile] = {}
    reading: dict[tuple[str, str], Tile] = {}
    for t in tiles:
        if t.index in seen:
            raise TileError(f"{path}: tile index {t.index} appears twice")
        seen[t.index] = t
        # trial J: a copied entry whose file was not edited fused one tile's pixels twice
        other = reading.setdefault((t.path, t.dataset), t)
        if other is not t:
            raise TileError(f"{path}: tiles {other.index} and {t.index} both read "
                            f"{t.path}{f' ({t.dataset})' if t.dataset else ''}: each tile "
                            f"needs its own file (an entry copied without its 'file'?)")
    first = tiles[0]
    for t in tiles[1:]:
        if t.pixel_resolution != first.pixel_resolution:
            raise TileError(
                f"{path}: tile {t.index} has field 'pixelResolution' {list(t.pixel_resolution)} but "
                f"tile {first.index} has {list(first.pixel_resolution)}; all tiles must agree")
        if t.type != first.type:
            raise TileError(
                f"{path}: tile {t.index} has field 'type' {t.type} but tile {first.index} has "
                f"{first.type}; all tiles of a channel must have one type")
