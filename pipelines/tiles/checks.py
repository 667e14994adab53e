"""Checks of a whole acquisition, run on the driver before anything is planned."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from pipelines.errors import TileError
from pipelines.tiles.model import Tile, TileSet
from pipelines.tiles.readers import check_tile_file


def check_same_geometry(tiles: tuple[tuple[TileSet, ...], ...]) -> None:
    """Every channel and timepoint must describe the same tiles at the same places."""
    reference = tiles[0][0]
    shape = [(t.index, t.box, t.size, t.type) for t in reference]
    for row in tiles:
        for other in row:
            if [(t.index, t.box, t.size, t.type) for t in other] != shape:
                raise TileError(f"{other.source}: tile indices, positions, sizes or types differ "
                                f"from {reference.source}; all channels and timepoints must share "
                                f"one tile geometry (the same tiles covering the same voxels)")


def check_tile_files(sets: Iterable[TileSet], s3=None, threads: int = 16) -> None:
    """Open every tile file's header (in parallel: on shared filesystems and object stores
    this is latency-bound); a problem names the tile JSON and the tile index too."""
    tiles = [(ts.source, tile) for ts in sets for tile in ts]
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(partial(_check_one, s3=s3), tiles):
            pass


def _check_one(described: tuple[str, Tile], s3=None) -> None:
    """check_tile_file, its error prefixed with the JSON and index that name the file (a
    project's views name themselves: their label)."""
    source, tile = described
    try:
        check_tile_file(tile, s3)
    except TileError as e:
        if tile.label or not source:
            raise
        raise TileError(f"{source}: tile index {tile.index}: {e}") from None
