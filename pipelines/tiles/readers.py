"""Reading tile pixels: only the region a block needs, memory-mapped where the file allows.

Uncompressed, contiguous TIFF stacks are memory-mapped, so reading a region touches only
the pages and rows it covers. Other TIFFs (compressed, tiled, striped) fall back to reading
only the z-slices (pages) the region needs. Decoded pages (and, on S3, fetched rows) are
kept in a per-process cache of `limits.tile_cache` bytes, so the neighbouring blocks of
one task, which need other parts of the same pages, decode or fetch each page once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import numpy as np
import tifffile

from pipelines.errors import PipelineError, TileError
from pipelines.geometry import Box, to_xyz, to_zyx
from pipelines.storage import open_store
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import split as split_uri
from pipelines.tiles import containers
from pipelines.tiles.identity import file_identity
from pipelines.tiles.model import TILE_TYPES, Tile
from pipelines.tiles.remote import identity_of, open_remote

# tifffile logs what it finds wrong in a damaged file ("<tifffile.TiffPages @8> invalid page
# offset 131328") before it raises or returns None; the caller turns that into one TileError
# line, so without logging configured (Python would print the record to stderr itself) the
# user saw two. A handler of our own stops that; a job that configures logging still gets them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

# Per-process cache of opened stacks, so neighbouring blocks on one executor do not
# re-parse TIFF headers. Memory maps cost address space, not memory. Tile files must not
# change while a job runs (a job's output is a pure function of its inputs).
_OPEN_LIMIT = 64
_open: OrderedDict[str, np.ndarray | None] = OrderedDict()


class TileCache:
    """Decoded tile reads by key, least recently used dropped first, at most `limit` bytes
    (0: keep nothing). Cached arrays are shared: callers copy what they keep."""

    def __init__(self, limit: int = 0):
        self.limit, self.nbytes, self.hits, self.misses = limit, 0, 0, 0
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.run = ""  # the run the entries belong to

    def get(self, key: tuple, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self.items:
            self.hits += 1
            self.items.move_to_end(key)
            return self.items[key]
        self.misses += 1
        value = load()
        if value.nbytes <= self.limit:
            self.items[key] = value
            self.nbytes += value.nbytes
            while self.nbytes > self.limit:
                self.nbytes -= self.items.popitem(last=False)[1].nbytes
        return value

    def resize(self, limit: int) -> None:
        self.limit = limit
        while self.nbytes > limit:
            self.nbytes -= self.items.popitem(last=False)[1].nbytes


tile_cache = TileCache()  # this process's cache; executors size it from the plan


def set_tile_cache(limit: int, run: str = "") -> None:
    """Bound this process's cache of tile reads to `limit` bytes (limits.tile_cache). A new
    `run` starts empty: tiles may change between jobs (never during one)."""
    if tile_cache.run != run:
        tile_cache.resize(0)
        tile_cache.run = run
    if tile_cache.limit != limit:
        tile_cache.resize(limit)


def inspect_tiff(path: str, s3=None) -> tuple[tuple[int, int, int], np.dtype, Any]:
    """Shape (x, y, z) and dtype of the stack in a TIFF file (local or s3://), without
    reading its pixels, and the file's identity (`identity.file_identity`; on S3 from the
    request that opened it)."""
    try:
        source = open_remote(path, s3) if is_remote(path) else path
        with tifffile.TiffFile(source) as tif:
            series = tif.series[0]
            shape, dtype = series.shape, series.dtype
            _check_complete(series, tif.filehandle.size, path)
            first = _page(series.pages, 0, path)
            if first.compression != tifffile.COMPRESSION.NONE:
                first.asarray()  # can this compression be decoded here at all?
    except (FileNotFoundError, KeyError):
        raise TileError(f"{path}: tile file not found") from None
    except PipelineError:
        raise
    except Exception as e:  # tifffile raises many types for damaged files
        raise TileError(f"{path}: cannot read as TIFF: {e}") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise TileError(f"{path}: expected a 3D grayscale stack (z, y, x), found shape {shape}")
    found = file_identity(path, s3) if isinstance(source, str) else identity_of(source)
    return to_xyz(shape), np.dtype(dtype), found


def _page(pages, n: int, path: str):
    """Slice `n` of a TIFF series; tifffile gives None for a page it cannot find."""
    page = pages[n]
    if page is None:
        raise TileError(f"{path}: truncated or damaged TIFF (slice {n} is missing)")
    return page


def _check_complete(series, file_size: int, path: str) -> None:
    """A truncated file still has a readable header: check that the last slice's data is
    really there."""
    pages = series.pages
    last = pages[len(pages) - 1] if len(pages) else None
    if last is None:
        raise TileError(f"{path}: truncated or damaged TIFF (its last slice is missing)")
    ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts)]
    if series.dataoffset is not None:  # contiguous: one block of nbytes from dataoffset
        ends.append(series.dataoffset + series.nbytes)
    if ends and max(ends) > file_size:
        raise TileError(f"{path}: truncated TIFF: {file_size} bytes, but its pixel data runs to "
                        f"{max(ends)} bytes")


def inspect_view(tile: Tile, s3=None) -> tuple[tuple[int, int, int], np.dtype]:
    """Shape (x, y, z) and dtype of a tile's pixels, whatever holds them (`Tile.loader`),
    without reading them."""
    if tile.loader == "tiff":
        if tile.dataset not in ("", "0"):
            raise TileError(f"{tile.path}: {tile.name} is series {tile.dataset} of its file; only "
                            f"files that hold one image are supported")
        return inspect_tiff(tile.path, s3)[:2]
    where = f"{tile.path} ({tile.dataset})"
    if tile.loader == "hdf5":
        dataset = containers.open_hdf5(tile.path, tile.dataset, s3)
        if dataset.ndim != 3:
            raise TileError(f"{where}: expected a 3D dataset, found shape {list(dataset.shape)}")
        return to_xyz(dataset.shape), containers.hdf5_dtype(dataset)
    array = containers.open_array(tile.loader, tile.path, tile.dataset, s3)
    return to_xyz(array.shape), array.dtype


def check_tile_file(tile: Tile, s3=None) -> Any:
    """Raise TileError if the tile's file is missing, unreadable, or differs from the JSON;
    returns the file's identity (`identity.file_identity`), a TIFF's taken as it was opened."""
    if tile.loader == "tiff" and tile.dataset in ("", "0"):
        shape, dtype, found = inspect_tiff(tile.path, s3)
    else:   # a container, or a TIFF series inspect_view refuses
        (shape, dtype), found = inspect_view(tile, s3), file_identity(tile.path, s3)
    where = f"{tile.path}" + (f" ({tile.dataset})" if tile.loader != "tiff" else "")
    described = "the tile JSON" if not tile.label else "the project"
    if shape != tile.size:
        field = "field 'size'" if not tile.label else "<size>"
        # trial J: a compressed stack cut short reads as fewer slices, not as truncated
        short = shape[:2] == tile.size[:2] and shape[2] < tile.size[2] and tile.loader == "tiff"
        raise TileError(
            f"{where}: {tile.name} {field} is {list(tile.size)} in {described} "
            f"but the file holds {list(shape)} (x, y, z)" +
            ("; or the file was cut short (a copy that did not finish): its slices "
             "cannot all be found" if short else "") + _other_series(tile, s3))
    if dtype != tile.dtype:
        readable = ", ".join(f"{d} ({name})" for name, d in TILE_TYPES.items())
        raise TileError(
            f"{where}: {tile.name} field 'type' is {tile.type} ({tile.dtype}) in the "
            f"tile JSON but the file holds {dtype}" + _other_series(tile, s3) +
            ("" if dtype in TILE_TYPES.values() else
             f"; tiles are read as {readable} only: convert these, e.g. to float32 (exact for "
             f"integers up to 2^24)"))
    return found


def _other_series(tile: Tile, s3) -> str:
    """For a TIFF holding several image series (a thumbnail first, say), that only the
    first is read (trial N: a stack in series 1 read as the thumbnail's shape, with no
    word of why); '' otherwise, or when the file cannot be opened again."""
    if tile.loader != "tiff":
        return ""
    try:
        source = open_remote(tile.path, s3) if is_remote(tile.path) else tile.path
        with tifffile.TiffFile(source) as tif:
            count = len(tif.series)
    except Exception:   # an error message on its way out: it says what it can
        return ""
    return (f" (the file holds {count} image series, and only the first is read: "
            f"write the stack as a file of its own)") if count > 1 else ""


def read_region(tile: Tile, region: Box, s3=None) -> np.ndarray:
    """Pixels of `region` (x, y, z, relative to the tile's own origin) as a z, y, x array."""
    if region.intersect(Box((0, 0, 0), tile.size)) != region:
        raise ValueError(f"region {region} lies outside tile {tile.index} of size {tile.size}")
    if tile.loader == "hdf5":
        return containers.read_hdf5(containers.open_hdf5(tile.path, tile.dataset, s3), region)
    if tile.loader != "tiff":
        try:
            return containers.read_chunked(containers.open_array(tile.loader, tile.path,
                                                                 tile.dataset, s3),
                                           region, tile_cache, s3)
        except TileError as e:   # the chunk's path alone does not say which view it was
            raise TileError(f"{tile.name}: {e}") from None
    if is_remote(tile.path):
        return _remote_region(tile, region, s3)
    stack = _memmap(tile.path)
    if stack is not None:
        return np.asarray(stack.reshape(to_zyx(tile.size))[region.slices_zyx()])
    with tifffile.TiffFile(tile.path) as tif:
        return _decode_pages(tif, tile, region)


def _decode_pages(tif: tifffile.TiffFile, tile: Tile, region: Box) -> np.ndarray:
    """Decode one page (z-slice) at a time, keeping only the rows and columns needed."""
    z, y, x = region.slices_zyx()
    out = np.empty(to_zyx(region.shape), dtype=tile.dtype)
    pages = tif.series[0].pages
    plane = to_zyx(tile.size)[1:]
    for n, page in enumerate(range(z.start, z.stop)):
        decoded = tile_cache.get(("page", tile.path, page),
                                 partial(_decode_page, pages, page, tile.path, plane))
        out[n] = decoded[y, x]
    return out


def _decode_page(pages, n: int, path: str, plane: tuple) -> np.ndarray:
    page = _page(pages, n, path)
    try:
        return page.asarray().reshape(plane)
    except (OSError, MemoryError, PipelineError):
        raise   # reading failed, not decoding: the file system or the store says why
    except Exception as e:   # a codec's own error type (DeflateError, …): named with the file
        if type(e).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise   # a store's error while the page was fetched (S3 range reads), not damage
        # trial J: "DeflateError: … BAD_DATA" named neither the file nor the slice
        raise TileError(f"{path}: slice {n} cannot be decoded ({type(e).__name__}: {e}); "
                        f"the file is damaged: copy it again from the acquisition") from None


def _fetch_rows(store, name: str, first: int, nbytes: int, dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(store.get_range(name, first, first + nbytes), dtype=dtype)


# An uncompressed remote stack up to this size is fetched whole, in one request, when the
# tile cache keeps four such stacks for the next blocks (a task's blocks touch several
# tiles: review K) or the region is half of it or more: slice by slice, a
# 128 KiB tile cost 27 range requests over its blocks (trial V: an export from S3 10-18 ×
# slower than from a local disk, 0.2 MiB/s).
WHOLE_STACK = 8 << 20


def _remote_region(tile: Tile, region: Box, s3) -> np.ndarray:
    """An uncompressed contiguous stack costs one range request per z-slice of the region
    (one for the whole stack when it is small: WHOLE_STACK); anything else is decoded
    page by page through a range-request file."""
    layout = _remote_layout(tile.path, s3)
    if layout is None:
        with tifffile.TiffFile(open_remote(tile.path, s3)) as tif:
            return _decode_pages(tif, tile, region)
    offset, dtype = layout
    z, y, x = region.slices_zyx()
    depth, height, width = to_zyx(tile.size)
    folder, name = split_uri(tile.path)
    store = open_store(folder, s3)
    row_bytes = width * dtype.itemsize
    whole = depth * height * row_bytes
    if whole <= WHOLE_STACK and (4 * whole <= tile_cache.limit or whole <= 2 * region.size * dtype.itemsize):
        stack = tile_cache.get(("stack", tile.path),
                               partial(_fetch_rows, store, name, offset, whole, dtype))
        return np.array(stack.reshape(depth, height, width)[z, y, x])
    out = np.empty(to_zyx(region.shape), dtype=tile.dtype)
    for n, page in enumerate(range(z.start, z.stop)):
        first = offset + (page * height + y.start) * row_bytes
        fetch = partial(_fetch_rows, store, name, first, (y.stop - y.start) * row_bytes, dtype)
        rows = tile_cache.get(("rows", tile.path, page, y.start, y.stop), fetch)
        out[n] = rows.reshape(-1, width)[:, x]
    return out


@lru_cache(maxsize=_OPEN_LIMIT)
def _remote_layout(uri: str, s3) -> tuple[int, np.dtype] | None:
    """(data offset, dtype) of an uncompressed contiguous remote stack, else None."""
    with tifffile.TiffFile(open_remote(uri, s3)) as tif:
        series = tif.series[0]
        first = _page(series.pages, 0, uri)
        if series.dataoffset is None or first.compression != tifffile.COMPRESSION.NONE:
            return None
        return int(series.dataoffset), series.dtype


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
