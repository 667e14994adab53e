"""Flatfield fields on disk, in stitching-spark's convention: a folder
`<tile-json-stem>-flatfield/` beside the tile JSON holding `S.tif` (the gain) and `T.tif`
(the offset), float32 (y, x) images over a tile's plane; corrected = (raw - T) / S.
Fields that change with depth are stacks of planes (groups, y, x), 1 <= groups <= the
tiles' slices: plane k belongs at the centre of the k-th of `groups` equal runs of
slices, and slice z is corrected by the linear interpolation between the two nearest
centres (`plane_at`; a stack of one plane per slice is used as it is).
`flatfield.json` beside them records how they were estimated, `flatfield.png` shows them.
The folder is a path or an s3:// URI (beside a tile JSON in a bucket); every read and write
goes through `pipelines.storage`.
"""

from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile

from pipelines.errors import PipelineError, cause
from pipelines.illumination.estimate import METHOD, Fields, implausible_gain, not_finite
from pipelines.storage import open_store
from pipelines.storage.documents import json_if_readable
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import join as join_uri

GAIN_FILE, OFFSET_FILE, INFO_FILE, PICTURE_FILE = "S.tif", "T.tif", "flatfield.json", "flatfield.png"


class FlatfieldError(PipelineError):
    """The flatfield fields are missing, unreadable or do not fit the tiles."""


def folder_beside(tile_json: str) -> str:
    """Where the fields of the tiles in `tile_json` go: `<stem>-flatfield` beside it."""
    stem, dot, suffix = tile_json.rpartition(".")
    return f"{stem if dot and '/' not in suffix else tile_json}-flatfield"


def has_fields(folder: str, s3=None) -> bool:
    """Whether `folder` (a path or an s3:// URI) holds both S.tif and T.tif."""
    return all(_exists(folder, name, s3) for name in (GAIN_FILE, OFFSET_FILE))


def _exists(folder: str, name: str, s3=None) -> bool:
    try:
        return open_store(folder, s3).exists(name)
    except PipelineError:
        raise
    except Exception as e:  # refused credentials, no such bucket, unreachable endpoint
        raise FlatfieldError(f"cannot reach {join_uri(folder, name)}: {cause(e)}") from None


def write_fields(folder: str, fields: Fields, info: dict, picture: bytes = b"", s3=None) -> list[str]:
    """Write S.tif, T.tif, flatfield.json (and `picture` as flatfield.png) into `folder`,
    a path or an s3:// URI, each object replaced atomically; the URIs written."""
    store, written = open_store(folder, s3), []
    for name, image in ((GAIN_FILE, fields.gain), (OFFSET_FILE, fields.offset)):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.asarray(image, dtype=np.float32), photometric="minisblack")
        written.append(_put(store, folder, name, buffer.getvalue()))
    written.append(_put(store, folder, INFO_FILE, (json.dumps(info, indent=2) + "\n").encode()))
    if picture:
        written.append(_put(store, folder, PICTURE_FILE, picture))
    return written


def earlier_estimate(folder: str, s3=None) -> str:
    """How the estimation of the fields in `folder` differed from this version's ('' when
    it did not): an estimated offset T that was not checked against the tiles' darkest
    values (`estimate.impossible_offset`; versions before that check, whose
    flatfield.json says nothing of it), or another `estimate.METHOD`. Fields a user made
    (no flatfield.json, or none of this tool's marks in it) are taken as given."""
    info = json_if_readable(join_uri(folder, INFO_FILE), s3)   # missing or unreadable: None
    if not isinstance(info, dict) or "offset_estimated" not in info:
        return ""
    # before it was recorded: method 1 (the changes before it made no other fields of what
    # it wrote: NaN tiles, handled since 2026-12-07 morning, had made fields "not usable")
    if "estimation_method" not in info:
        if "offset_checked" in info or info.get("offset_estimated") is not True:
            return ""
        return ("which did not check its offset T against the tiles' darkest values (a T "
                "above them clips those pixels to 0)")
    if info["estimation_method"] == METHOD:
        return ""
    return f"whose estimation differs (method {info['estimation_method']}, this version's {METHOD})"


def _put(store, folder: str, name: str, data: bytes) -> str:
    store.put(name, data)   # a temporary file renamed over it, or one S3 put: atomic
    return join_uri(folder, name)


def _read(folder: str, name: str, what: str, s3=None) -> bytes:
    """The bytes of `name` in `folder`, or FlatfieldError (one line) saying why not."""
    try:
        return open_store(folder, s3).get(name)
    except KeyError:
        raise FlatfieldError(f"{what}: {join_uri(folder, name)} not found") from None
    except PipelineError:
        raise
    except Exception as e:  # refused credentials, no such bucket, unreachable endpoint
        raise FlatfieldError(f"{what}: cannot read {join_uri(folder, name)}: {cause(e)}") from None


def check_fields(folder: str, size: tuple[int, ...], what: str, s3=None) -> int:
    """Raise FlatfieldError (one line) unless `folder` holds S.tif and T.tif of the tile
    plane's shape (x, y of `size`), each one plane or a stack of at most the tiles'
    slices (z of `size`; 0 when the tiles differ in depth: one plane only), both alike;
    `what` names the setting that pointed here. Returns the bytes both hold as float32."""
    found = Path(folder).is_dir() if not is_remote(folder) else \
        any(_exists(folder, name, s3) for name in (GAIN_FILE, OFFSET_FILE))
    if not found:
        # trial W: `--set fusion.flatfield=none` meant no correction, and read as a folder
        off = folder.rstrip("/").rpartition("/")[2].lower() in ("none", "off", "false", "no")
        raise FlatfieldError(f"{what}: flatfield folder {folder} not found (expected "
                             f"{GAIN_FILE} and {OFFSET_FILE} in it)"
                             + ('; fusion.flatfield = "" turns the correction off' if off else ""))
    plane, depth = (int(size[1]), int(size[0])), int(size[2]) if len(size) > 2 else 0
    gain, offset = (_image(folder, name, what, s3) for name in (GAIN_FILE, OFFSET_FILE))
    shapes = [gain.shape, offset.shape]   # each file read once: its shape, then its values
    for name, shape in zip((GAIN_FILE, OFFSET_FILE), shapes):
        if len(shape) not in (2, 3) or shape[-2:] != plane:
            axes = "x, y, planes" if len(shape) == 3 else "x, y"
            raise FlatfieldError(f"{what}: {join_uri(folder, name)} is {' x '.join(map(str, shape[::-1]))} "
                                 f"pixels ({axes}) but the tiles are {plane[1]} x {plane[0]}")
        if len(shape) == 3 and depth == 0:
            raise FlatfieldError(f"{what}: {join_uri(folder, name)} holds planes for depths, but the "
                                 f"tiles differ in depth (fields per slice need one depth)")
        if len(shape) == 3 and not 1 <= shape[0] <= depth:
            raise FlatfieldError(f"{what}: {join_uri(folder, name)} holds {shape[0]} planes but the "
                                 f"tiles have {depth} slices (one plane, or at most one per slice)")
    if shapes[0] != shapes[1]:
        raise FlatfieldError(f"{what}: {GAIN_FILE} and {OFFSET_FILE} in {folder} differ in shape "
                             f"({shapes[0]} and {shapes[1]})")
    _check_values(folder, gain, offset, what)
    return 4 * sum(int(np.prod(shape)) for shape in shapes)


def _check_values(folder: str, gain: np.ndarray, offset: np.ndarray, what: str) -> None:
    """Supplied fields are held to the estimate's check: the correction divides by S
    (S = 0 made every voxel 65535, one NaN made garbage), and T must be finite."""
    problem = implausible_gain(gain)
    if problem:
        raise FlatfieldError(f"{what}: {join_uri(folder, GAIN_FILE)} is not usable: {problem}")
    if not np.isfinite(offset).all():
        raise FlatfieldError(f"{what}: {join_uri(folder, OFFSET_FILE)} is not usable: "
                             f"{not_finite(offset)}")


def _image(folder: str, name: str, what: str, s3=None) -> np.ndarray:
    try:
        return tifffile.imread(io.BytesIO(_read(folder, name, what, s3))).astype(np.float64)
    except PipelineError:
        raise
    except Exception as e:  # tifffile raises many types for damaged files
        raise FlatfieldError(f"{what}: cannot read {join_uri(folder, name)} as TIFF: {e}") from None


def field_bytes(folders: tuple[str, ...], plane_xy: tuple[int, int], groups: int = 1, s3=None) -> int:
    """Bytes an executor process holds for `folders`' fields once read (S and T,
    float32); a folder not written yet counts `groups` planes of `plane_xy`."""
    total = 0
    for folder in folders:
        if has_fields(folder, s3):
            total += 4 * sum(int(np.prod(_shape_of(folder, name, "fusion.flatfield", s3)))
                             for name in (GAIN_FILE, OFFSET_FILE))
        else:
            total += 8 * int(plane_xy[0]) * int(plane_xy[1]) * max(1, groups)
    return total


def _shape_of(folder: str, name: str, what: str, s3=None) -> tuple[int, ...]:
    data = _read(folder, name, what, s3)
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return tuple(int(n) for n in tif.series[0].shape)
    except Exception as e:  # tifffile raises many types for damaged files
        raise FlatfieldError(f"{what}: cannot read {join_uri(folder, name)} as TIFF: {e}") from None


def fields_digest(folder: str, s3=None) -> str:
    """sha256 of S.tif and T.tif: part of the export's fingerprint, so a resume over
    chunks made with other fields is refused like any other change of inputs."""
    digest = hashlib.sha256()
    for name in (GAIN_FILE, OFFSET_FILE):
        digest.update(_read(folder, name, "fusion.flatfield", s3))
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
def load_fields(folder: str, s3=None) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) float32 (y, x) or (groups, y, x), read once per executor process (fields do
    not change during a job: the driver checked them before the first task)."""
    gain, offset = (tifffile.imread(io.BytesIO(_read(folder, name, "fusion.flatfield", s3))).astype(np.float32)
                    for name in (GAIN_FILE, OFFSET_FILE))
    gain.flags.writeable = offset.flags.writeable = False
    return gain, offset
