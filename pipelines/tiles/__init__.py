"""Tiles: the tile model, stitching-spark tile JSON, pixel readers, acquisition checks."""

from pipelines.tiles.checks import check_same_geometry, check_tile_files
from pipelines.tiles.model import TILE_TYPES, Tile, TileSet, tile_type_of
from pipelines.tiles.readers import check_tile_file, inspect_tiff, read_region, set_tile_cache
from pipelines.tiles.tilejson import read_tile_json, read_tile_jsons, write_tile_json

__all__ = [
    "TILE_TYPES", "Tile", "TileSet", "tile_type_of", "check_tile_file", "inspect_tiff",
    "read_region", "set_tile_cache", "read_tile_json", "read_tile_jsons", "write_tile_json", "check_same_geometry", "check_tile_files",
]
