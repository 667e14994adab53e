"""Flatfield fields on disk, in stitching-spark's convention: a folder
`<tile-json-stem>-flatfield/` beside the tile JSON holding `S.tif` (the gain) and `T.tif`
(the offset), float32 (y, x) images over a tile's plane; corrected = (raw - T) / S.
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


def check_fields(folder: str, size_xy: tuple[int, int], what: str) -> None:
    """Raise FlatfieldError (one line) unless `folder` holds S.tif and T.tif of the tile
    plane's shape; `what` names the setting that pointed here."""
    if not Path(folder).is_dir():
        raise FlatfieldError(f"{what}: flatfield folder {folder} not found (expected "
                             f"{GAIN_FILE} and {OFFSET_FILE} in it)")
    expected = (int(size_xy[1]), int(size_xy[0]))
    for name in (GAIN_FILE, OFFSET_FILE):
        shape = _shape_of(Path(folder) / name, what)
        if shape != expected:
            raise FlatfieldError(f"{what}: {Path(folder) / name} is {shape[-1]} x {shape[0]} "
                                 f"pixels (x, y) but the tiles are {expected[1]} x {expected[0]}")


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


@lru_cache(maxsize=8)
def load_fields(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) float32 (y, x), read once per executor process (fields do not change
    during a job: the driver checked them before the first task)."""
    gain = tifffile.imread(Path(folder) / GAIN_FILE).astype(np.float32)
    offset = tifffile.imread(Path(folder) / OFFSET_FILE).astype(np.float32)
    gain.flags.writeable = offset.flags.writeable = False
    return gain, offset
