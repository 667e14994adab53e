"""Checks of a whole acquisition, run on the driver before anything is planned."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from pipelines.errors import TileError
from pipelines.storage.uri import is_remote
from pipelines.tiles.model import Tile, TileSet
from pipelines.tiles.readers import check_tile_file


def check_same_geometry(tiles: tuple[tuple[TileSet, ...], ...]) -> None:
    """Every channel and timepoint must describe the same tiles at the same places; a
    difference names the first tile that differs and how."""
    reference = tiles[0][0]
    for row in tiles:
        for other in row:
            difference = _first_difference(reference, other)
            if difference:
                raise TileError(f"{other.source}: {difference}; all channels and timepoints must "
                                f"share one tile geometry (the same tiles covering the same "
                                f"voxels, of one pixel type and resolution)")


def _first_difference(reference: TileSet, other: TileSet) -> str:
    """How `other` differs from `reference` first, or "" when it does not."""
    if len(other) != len(reference):   # trial V: which tile, not only how many
        mine, theirs = {t.index for t in other}, {t.index for t in reference}
        lacks, extra = sorted(theirs - mine), sorted(mine - theirs)
        which = (f": it lacks tile {_few(lacks)}" if lacks else "") + \
            (f"{' and' if lacks else ':'} holds tile {_few(extra)}, which the other lacks" if extra else "")
        return f"{len(other)} tiles where {reference.source} has {len(reference)}{which}"
    if [t.index for t in other] != [t.index for t in reference] and \
            sorted(t.index for t in other) == sorted(t.index for t in reference):
        # trial AJ: "tile 5 where … has tile 0" read as another geometry
        mine, theirs = next((m, t) for m, t in zip(other, reference) if m.index != t.index)
        return (f"lists its tiles in another order than {reference.source} ({mine.name} where "
                f"that lists {theirs.name}): list them in the same order")
    for mine, theirs in zip(other, reference):
        if mine.index != theirs.index:
            return f"{mine.name} where {reference.source} has {theirs.name}"
        for what, a, b in (("starts at voxel", list(mine.box.start), list(theirs.box.start)),
                           ("has size", list(mine.size), list(theirs.size)),
                           ("ends at voxel", list(mine.box.stop), list(theirs.box.stop)),
                           ("has type", mine.type, theirs.type),
                           # the output's metadata takes the first's: another would be lost
                           ("has pixelResolution", list(mine.pixel_resolution),
                            list(theirs.pixel_resolution))):
            if a != b:
                return f"{mine.name} {what} {a} where {theirs.name} of {reference.source} {what} {b}"
    return ""


def _few(indices: list[int]) -> str:
    """'index 5', or 'indices 5, 9, 12 and 3 more'."""
    shown = ", ".join(map(str, indices[:3]))
    return ("index " if len(indices) == 1 else "indices ") + shown + (
        f" and {len(indices) - 3} more" if len(indices) > 3 else "")


def check_tile_files(sets: Iterable[TileSet], s3=None, threads: int = 16) -> dict[str, Any]:
    """Open every tile file's header; a problem names the tile JSON and the tile index too.
    Returns every file's identity by path (`check_tile_file`). Files in object stores are opened `threads` at a time (each open waits on the
    network); local files one after another in this thread: parsing a header holds the
    GIL, so threads only add contention (64 local TIFFs of 128 slices: 31 ms in one
    thread, 77 ms with 16; benchmarks/PROFILE.md, "Before the first task")."""
    tiles = [(ts.source, tile) for ts in sets for tile in ts]
    check = partial(_check_one, s3=s3)
    if not any(is_remote(tile.path) for _, tile in tiles):
        return dict(map(check, tiles))
    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(check, tiles))


def _check_one(described: tuple[str, Tile], s3=None) -> tuple[str, Any]:
    """(path, identity) of check_tile_file, its error prefixed with the JSON and index that
    name the file (a project's views name themselves: their label)."""
    source, tile = described
    try:
        return tile.path, check_tile_file(tile, s3)
    except TileError as e:
        if tile.label or not source:
            raise
        # the index once (trial AI: "tile index 0: …: tile 0 field 'type' is …")
        named = f"{tile.name} " in str(e)
        raise TileError(f"{source}: " + ("" if named else f"tile index {tile.index}: ") + str(e)) from None
