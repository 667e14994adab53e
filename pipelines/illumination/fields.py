"""Flatfield fields on disk, in stitching-spark's convention: a folder
`<tile-json-stem>-flatfield/` beside the tile JSON holding `S.tif` (the gain) and `T.tif`
(the offset), float32 (y, x) images over a tile's plane; corrected = (raw - T) / S.
Fields that change with depth are stacks of planes (groups, y, x), 1 <= groups <= the
tiles' slices: plane k belongs at the centre of the k-th of `groups` equal runs of
slices, and slice z is corrected by the linear interpolation between the two nearest
centres (`plane_at`; a stack of one plane per slice is used as it is).
`flatfield.json` beside them records how they were estimated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile

from pipelines.errors import PipelineError
from pipelines.illumination.estimate import Fields

GAIN_FILE, OFFSET_FILE, INFO_FILE = "S.tif", "T.tif", "flatfield.json"


class FlatfieldError(PipelineError):
    """The flatfield fields are missing, unreadable or do not fit the tiles."""


def folder_beside(tile_json: str) -> str:
    """Where the fields of the tiles in `tile_json` go: `<stem>-flatfield` beside it."""
    stem, dot, suffix = tile_json.rpartition(".")
    return f"{stem if dot and '/' not in suffix else tile_json}-flatfield"


def has_fields(folder: str) -> bool:
    return all((Path(folder) / name).is_file() for name in (GAIN_FILE, OFFSET_FILE))


def write_fields(folder: str, fields: Fields, info: dict) -> list[str]:
    """Write S.tif, T.tif and flatfield.json into `folder` (each replaced atomically);
    the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in ((GAIN_FILE, fields.gain), (OFFSET_FILE, fields.offset)):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.asarray(image, dtype=np.float32), photometric="minisblack")
        written.append(_atomic(out / name, buffer.getvalue()))
    written.append(_atomic(out / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode()))
    return written


def _atomic(path: Path, data: bytes) -> str:
    """Write through a temporary file in the same folder, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def check_fields(folder: str, size: tuple[int, ...], what: str) -> None:
    """Raise FlatfieldError (one line) unless `folder` holds S.tif and T.tif of the tile
    plane's shape (x, y of `size`), each one plane or a stack of at most the tiles'
    slices (z of `size`; 0 when the tiles differ in depth: one plane only), both alike;
    `what` names the setting that pointed here."""
    if not Path(folder).is_dir():
        raise FlatfieldError(f"{what}: flatfield folder {folder} not found (expected "
                             f"{GAIN_FILE} and {OFFSET_FILE} in it)")
    plane, depth = (int(size[1]), int(size[0])), int(size[2]) if len(size) > 2 else 0
    shapes = [_shape_of(Path(folder) / name, what) for name in (GAIN_FILE, OFFSET_FILE)]
    for name, shape in zip((GAIN_FILE, OFFSET_FILE), shapes):
        if len(shape) not in (2, 3) or shape[-2:] != plane:
            axes = "x, y, planes" if len(shape) == 3 else "x, y"
            raise FlatfieldError(f"{what}: {Path(folder) / name} is {' x '.join(map(str, shape[::-1]))} "
                                 f"pixels ({axes}) but the tiles are {plane[1]} x {plane[0]}")
        if len(shape) == 3 and depth == 0:
            raise FlatfieldError(f"{what}: {Path(folder) / name} holds planes for depths, but the "
                                 f"tiles differ in depth (fields per slice need one depth)")
        if len(shape) == 3 and not 1 <= shape[0] <= depth:
            raise FlatfieldError(f"{what}: {Path(folder) / name} holds {shape[0]} planes but the "
                                 f"tiles have {depth} slices (one plane, or at most one per slice)")
    if shapes[0] != shapes[1]:
        raise FlatfieldError(f"{what}: {GAIN_FILE} and {OFFSET_FILE} in {folder} differ in shape "
                             f"({shapes[0]} and {shapes[1]})")


def field_bytes(folders: tuple[str, ...], plane_xy: tuple[int, int], groups: int = 1) -> int:
    """Bytes an executor process holds for `folders`' fields once read (S and T,
    float32); a folder not written yet counts `groups` planes of `plane_xy`."""
    total = 0
    for folder in folders:
        if has_fields(folder):
            shapes = [_shape_of(Path(folder) / name, "fusion.flatfield") for name in (GAIN_FILE, OFFSET_FILE)]
            total += 4 * sum(int(np.prod(shape)) for shape in shapes)
        else:
            total += 8 * int(plane_xy[0]) * int(plane_xy[1]) * max(1, groups)
    return total


def _shape_of(path: Path, what: str) -> tuple[int, ...]:
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(int(n) for n in tif.series[0].shape)
    except FileNotFoundError:
        raise FlatfieldError(f"{what}: {path} not found") from None
    except Exception as e:  # tifffile raises many types for damaged files
        raise FlatfieldError(f"{what}: cannot read {path} as TIFF: {e}") from None


def fields_digest(folder: str) -> str:
    """sha256 of S.tif and T.tif: part of the export's fingerprint, so a resume over
    chunks made with other fields is refused like any other change of inputs."""
    digest = hashlib.sha256()
    for name in (GAIN_FILE, OFFSET_FILE):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:32]


def plane_at(field: np.ndarray, z: int, depth: int) -> np.ndarray:
    """The (y, x) plane of `field` ((y, x), or (groups, y, x) for tiles of `depth`
    slices) that corrects slice z: linear between the groups' centres, the outer planes
    beyond them. The same float32 operations for slice z whatever region asks for it."""
    if field.ndim == 2:
        return field
    groups = field.shape[0]
    u = (z + 0.5) * groups / depth - 0.5          # slice z on the axis of group centres
    k = int(min(max(np.floor(u), 0), max(groups - 2, 0)))
    t = np.float32(min(max(u - k, 0.0), 1.0)) if groups > 1 else np.float32(0.0)
    if t == 0:
        return field[k]
    return field[k] * (np.float32(1) - t) + field[k + 1] * t


@lru_cache(maxsize=8)
def load_fields(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) float32 (y, x) or (groups, y, x), read once per executor process (fields do
    not change during a job: the driver checked them before the first task)."""
    gain = tifffile.imread(Path(folder) / GAIN_FILE).astype(np.float32)
    offset = tifffile.imread(Path(folder) / OFFSET_FILE).astype(np.float32)
    gain.flags.writeable = offset.flags.writeable = False
    return gain, offset
