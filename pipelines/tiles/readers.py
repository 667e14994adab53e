"""Reading tile pixels: only the region a block needs, memory-mapped where the file allows.

Uncompressed, contiguous TIFF stacks are memory-mapped, so reading a region touches only
the pages and rows it covers. Other TIFFs (compressed, tiled, striped) fall back to reading
only the z-slices (pages) the region needs.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import tifffile

from ..errors import TileError
from ..geometry import Box, to_xyz, to_zyx
from .model import Tile

# Per-process cache of opened stacks, so neighbouring blocks on one executor do not
# re-parse TIFF headers. Memory maps cost address space, not memory. Tile files must not
# change while a job runs (a job's output is a pure function of its inputs).
_OPEN_LIMIT = 64
_open: "OrderedDict[str, np.ndarray | None]" = OrderedDict()


def inspect_tiff(path: str) -> tuple[tuple[int, int, int], np.dtype]:
    """Shape (x, y, z) and dtype of the stack in a TIFF file, without reading its pixels."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = series.shape, series.dtype
            if series.pages[0].compression != tifffile.COMPRESSION.NONE:
                series.pages[0].asarray()  # can this compression be decoded here at all?
    except FileNotFoundError:
        raise TileError(f"{path}: tile file not found") from None
    except Exception as e:  # tifffile raises many types for damaged files
        raise TileError(f"{path}: cannot read as TIFF: {e}") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise TileError(f"{path}: expected a 3D grayscale stack (z, y, x), found shape {shape}")
    return to_xyz(shape), np.dtype(dtype)


def check_tile_file(tile: Tile) -> None:
    """Raise TileError if the tile's file is missing, unreadable, or differs from the JSON."""
    shape, dtype = inspect_tiff(tile.path)
    if shape != tile.size:
        raise TileError(
            f"{tile.path}: tile {tile.index} field 'size' is {list(tile.size)} in the tile JSON "
            f"but the file holds {list(shape)} (x, y, z)")
    if dtype != tile.dtype:
        raise TileError(
            f"{tile.path}: tile {tile.index} field 'type' is {tile.type} ({tile.dtype}) in the "
            f"tile JSON but the file holds {dtype}")


def read_region(tile: Tile, region: Box) -> np.ndarray:
    """Pixels of `region` (x, y, z, relative to the tile's own origin) as a z, y, x array."""
    if region.intersect(Box((0, 0, 0), tile.size)) != region:
        raise ValueError(f"region {region} lies outside tile {tile.index} of size {tile.size}")
    stack = _memmap(tile.path)
    if stack is not None:
        return np.asarray(stack.reshape(to_zyx(tile.size))[region.slices_zyx()])
    z, y, x = region.slices_zyx()
    out = np.empty(to_zyx(region.shape), dtype=tile.dtype)
    with tifffile.TiffFile(tile.path) as tif:
        pages = tif.series[0].pages
        for n, page in enumerate(range(z.start, z.stop)):
            # decode one page at a time and keep only the rows and columns the block needs
            out[n] = pages[page].asarray().reshape(to_zyx(tile.size)[1:])[y, x]
    return out


def _memmap(path: str) -> np.ndarray | None:
    """A read-only memory map of the stack, or None when the file cannot be mapped."""
    if path in _open:
        _open.move_to_end(path)
        return _open[path]
    try:
        stack = tifffile.memmap(path, mode="r")
    except FileNotFoundError:
        raise TileError(f"{path}: tile file not found") from None
    except ValueError:
        stack = None  # compressed or non-contiguous: read page by page instead
    _open[path] = stack
    if len(_open) > _OPEN_LIMIT:
        _open.popitem(last=False)
    return stack
