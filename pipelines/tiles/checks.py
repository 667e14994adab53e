"""Checks of a whole acquisition, run on the driver before anything is planned."""

from __future__ import annotations

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


def check_tile_files(tiles: list[Tile], s3=None, threads: int = 16) -> None:
    """Open every tile file's header (in parallel: on shared filesystems and object stores
    this is latency-bound)."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(partial(check_tile_file, s3=s3), tiles):
            pass
