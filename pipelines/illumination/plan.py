"""The corrections an export applies, decided and checked on the driver before any task.

`plan_correction` turns fusion.flatfield and fusion.intensity into the small
`Correction` the plan carries: it checks that every channel's field folder exists and
that its S.tif and T.tif fit the tiles' plane, and reads the tiles' intensity
coefficients from `<tile-json-stem>-intensity.json` (written by the matching step;
`intensity_paths`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pipelines.config import JobConfig
from pipelines.config.illumination import AUTO
from pipelines.illumination.correct import Correction
from pipelines.illumination.estimate import Z_GROUPS
from pipelines.illumination.fields import (
    FlatfieldError,
    check_fields,
    field_bytes,
    fields_digest,
    folder_beside,
    has_fields,
)
from pipelines.storage import open_store
from pipelines.storage.documents import read_json
from pipelines.storage.uri import sibling, split
from pipelines.tiles import TileSet

MIN_TILES = 6     # a channel with fewer tiles has too few samples per pixel to estimate from


def flatfield_folders(config: JobConfig) -> tuple[str, ...]:
    """Per channel, the fields folder fusion.flatfield names ("auto": beside the first
    timepoint's tile JSON); () when there is no flatfield."""
    return tuple(folder_beside(p) for p in config.inputs[0]) if config.flatfield == (AUTO,) \
        else config.flatfield


# why a BigStitcher project is not flatfield-corrected, and what to do instead
PROJECT_FLATFIELD = ("{what} needs tile JSON inputs, and this job reads a BigStitcher "
                     "project (its views may differ in shape and be placed by any affine): "
                     "leave fusion.flatfield unset and [flatfield] disabled, and correct "
                     "the views before (BigStitcher's own flatfield correction in Fiji)")


def intensity_path(tile_json: str) -> str:
    """`<stem>-intensity.json` beside the tile JSON (a path or an s3:// URI): the matched
    per-tile coefficients."""
    return sibling(tile_json, "-intensity.json")


def intensity_paths(config: JobConfig, channels: tuple[TileSet, ...]) -> tuple[str, ...]:
    """Per channel (`channels`: the first timepoint's tile sets), where its matched
    coefficients are: `<stem>-intensity.json` beside the channel's tile JSON; for a
    BigStitcher project, which is one file for every channel, `<stem>-intensity-c<N>.json`
    beside it, N the project's channel id (trial K: every channel's went to one file,
    and the second channel's path was an IndexError; trial L: numbered within the
    selection, channel 1 alone overwrote channel 0's)."""
    if config.is_project:
        return tuple(sibling(config.tiles, f"-intensity-c{ts.channel_id}.json") for ts in channels)
    return tuple(intensity_path(p) for p in config.inputs[0])


def plan_correction(config: JobConfig, tiles: tuple[tuple[TileSet, ...], ...]) -> Correction | None:
    """The Correction for the export of `tiles` (timepoints x channels), or None."""
    folders = flatfield_folders(config)
    if not folders and config.intensity != "match":
        return None
    _refuse_on_project(config, folders)
    s3 = config.s3_options()
    held = checked_fields(folders, tiles[0], s3)
    intensity: tuple = ()
    if config.intensity == "match":
        paths = intensity_paths(config, tiles[0])
        intensity = tuple(_coefficients_of(read_coefficients(p, s3), ts, p) for p, ts in zip(paths, tiles[0]))
    return Correction(folders, intensity, tuple(fields_digest(f, s3) for f in folders), held)


def _refuse_on_project(config: JobConfig, folders: tuple[str, ...]) -> None:
    if config.is_project and folders:
        raise FlatfieldError(PROJECT_FLATFIELD.format(what="fusion.flatfield: flatfield correction"))


def checked_fields(folders: tuple[str, ...], channels: tuple[TileSet, ...], s3) -> int:
    """`check_fields` of each channel's fields folder against its tiles (one missing, or
    of another shape, refused naming fusion.flatfield); the bytes they hold."""
    held = 0
    for folder, channel in zip(folders, channels):
        depths = {t.size[2] for t in channel}
        held += check_fields(folder, (*channel.tiles[0].size[:2], depths.pop() if len(depths) == 1 else 0),
                             "fusion.flatfield", s3)
    return held


def check_planned_fields(config: JobConfig, channels: tuple[TileSet, ...]) -> None:
    """What `plan_correction` refuses of the fields before they are read, for the dry run
    (trial S, review J): fields on a project; named folders missing or of another shape;
    "auto" folders that hold fields already (the run applies them; the others are
    estimated first), unless [flatfield] enabled estimates them all again."""
    folders = flatfield_folders(config)
    _refuse_on_project(config, folders)
    if not folders or config.estimate_flatfield:
        return
    s3 = config.s3_options()
    present = [f if config.flatfield != (AUTO,) or has_fields(f, s3) else "" for f in folders]
    checked_fields(tuple(f for f in present if f),
                   tuple(c for f, c in zip(present, channels) if f), s3)


def check_estimable(channels: list[tuple[TileSet, ...]], names: list[str],
                    per_slice: bool = False) -> None:
    """Raise FlatfieldError (one line) unless each channel's tiles can be estimated from:
    the export before it estimates, the dry run of a job that will (trial AH: it passed
    a job of 2 tiles the run then refused)."""
    for tilesets, name in zip(channels, names):
        tiles = [t for ts in tilesets for t in ts]
        planes = {t.size[:2] for t in tiles}
        depths = {t.size[2] for t in tiles}
        if per_slice and len(depths) > 1:
            raise FlatfieldError(f"{name}: tiles of different depths {sorted(depths)} cannot share "
                                 f"fields per slice (flatfield.per_slice)")
        if len(tiles) < MIN_TILES:
            raise FlatfieldError(f"{name}: {len(tiles)} tiles, but a flatfield needs at least "
                                 f"{MIN_TILES} to estimate from")
        if len(planes) > 1:
            raise FlatfieldError(f"{name}: tiles of different planes {sorted(planes)} cannot "
                                 f"share one flatfield")


def with_estimated_flatfield(config: JobConfig) -> JobConfig:
    """`config` as its export applies fields: with [flatfield] enabled and fusion.flatfield
    unset, the fields estimation writes beside the tile JSONs (as "auto")."""
    if config.estimate_flatfield and not config.flatfield:
        return replace(config, flatfield=(AUTO,))
    return config


def fields_to_estimate(config: JobConfig) -> bool:
    """Whether the export estimates fields before it fuses: [flatfield] enabled, or
    fusion.flatfield = "auto" with a folder that lacks its fields (`config` as
    `with_estimated_flatfield` gives it)."""
    return config.estimate_flatfield or (config.flatfield == (AUTO,) and not all(
        has_fields(f, config.s3_options()) for f in flatfield_folders(config)))


def planned_field_bytes(config: JobConfig, tiles: TileSet) -> int:
    """What the fields of `config` (`with_estimated_flatfield`) will hold per executor
    process, before they exist (the dry run): the folders' fields where written, else
    what estimation will write."""
    folders = flatfield_folders(config)
    if config.is_project or not folders:
        return 0
    size = tiles.tiles[0].size
    return field_bytes(folders, size[:2], min(size[2], Z_GROUPS) if config.flatfield_per_slice else 1,
                       config.s3_options())


def write_coefficients(path: str, doc: dict[str, Any], s3=None) -> None:
    """Write the coefficients document to `path` (a path or an s3:// URI), atomically."""
    folder, name = split(path)
    open_store(folder, s3).put(name, (json.dumps(doc, indent=2) + "\n").encode())


def read_coefficients(path: str, s3=None) -> tuple[tuple[int, float, float], ...]:
    """(tile index, gain, offset) per tile from an intensity JSON."""
    doc = read_json(path, s3, FlatfieldError, "intensity coefficients file",
                    'fusion.intensity = "match"')
    try:
        return tuple((int(t["index"]), float(t["gain"]), float(t["offset"])) for t in doc["tiles"])
    except (ValueError, KeyError, TypeError) as e:
        raise FlatfieldError(f"{path}: not an intensity coefficients file ({e})") from None


def _coefficients_of(found: tuple[tuple[int, float, float], ...], tiles: TileSet, path: str
                     ) -> tuple[tuple[int, float, float], ...]:
    """`found`, when it holds a coefficient for every tile of `tiles` (fusion looks them up
    by tile number); FlatfieldError otherwise: coefficients matched on other tiles."""
    missing = sorted({t.index for t in tiles} - {index for index, _, _ in found})
    if missing:
        raise FlatfieldError(f"{path}: no coefficients for tile(s) {missing[:5]} of "
                             f"{tiles.source}: matched on other tiles; delete it to match "
                             f"again")
    return found
