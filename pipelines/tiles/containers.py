"""Reading views stored in chunked containers: N5, Zarr (v2 and unsharded v3) and HDF5.

Each reader opens a view's array header once per process (cached), and a region read
decodes only the chunks the region touches; decoded chunks go through the per-process
tile cache (`readers.tile_cache`), so the neighbouring blocks of one task decode each
chunk once. A chunk that is not stored is the array's fill value (0 for N5).

Headers are read with the store of the container (local or s3://), chunks are decoded
with numcodecs; HDF5 goes through h5py (on S3, over range requests).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numcodecs
import numpy as np

from pipelines.errors import TileError, cause
from pipelines.geometry import Box, ChunkGrid, grid_indices, to_xyz, to_zyx
from pipelines.n5_blocks import n5_block_header
from pipelines.storage import open_store
from pipelines.storage.uri import is_remote
from pipelines.storage.uri import join as join_uri

_OPEN_LIMIT = 256


@dataclass(frozen=True)
class ChunkedArray:
    """A view's array in a chunked container: enough to find and decode its chunks."""

    container: str          # folder or URI of the container root
    path: str               # the array's path inside it
    shape: tuple[int, ...]  # numpy order (z, y, x), after dropping leading 1-sized axes
    chunks: tuple[int, ...]
    dtype: np.dtype         # as the values are returned (native byte order)
    stored: np.dtype        # as they are stored
    codec: Callable[[bytes], bytes]
    key: Callable[[tuple[int, ...]], str]   # chunk index (z, y, x) → object key
    lead: int = 0           # leading axes of size 1 dropped (OME-Zarr t, c)
    fill: float = 0
    n5: bool = False        # N5 blocks carry a header and may be truncated at edges


_arrays: OrderedDict[tuple[str, str, str], ChunkedArray] = OrderedDict()


def open_array(loader: str, container: str, dataset: str, s3=None) -> ChunkedArray:
    """The array of a view (cached per process); TileError when it cannot be read."""
    key = (loader, container, dataset)
    if key in _arrays:
        _arrays.move_to_end(key)
        return _arrays[key]
    store = open_store(container, s3)
    if loader == "n5":
        array = _open_n5(store, container, dataset)
    else:
        array = _open_zarr(store, container, _zarr_level0(store, container, dataset))
    _arrays[key] = array
    if len(_arrays) > _OPEN_LIMIT:
        _arrays.popitem(last=False)
    return array


def _json(store, key: str, where: str) -> dict:
    try:
        return _loads(store.get(key), where)
    except KeyError:
        raise TileError(f"{where}: not found") from None


def _loads(data: bytes, where: str):
    """A container's JSON document; TileError naming it when it is not one."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise TileError(f"{where}: not valid JSON: {e}") from None
    except RecursionError:  # json recurses once per level of nesting
        raise TileError(f"{where}: lists or objects nested too deeply") from None


# N5 compression types → numcodecs (N5's lz4 is lz4-java's block stream, which numcodecs
# does not read)
_N5_CODECS = {
    "raw": lambda c: None,
    "gzip": lambda c: numcodecs.Zlib(c.get("level", -1)) if c.get("useZlib") else numcodecs.GZip(c.get("level", -1)),
    "zstd": lambda c: numcodecs.Zstd(c.get("level", 0)),
    "blosc": lambda c: numcodecs.Blosc(),
    "xz": lambda c: numcodecs.LZMA(),
    "bzip2": lambda c: numcodecs.BZ2(),
}
_N5_TYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")


def _open_n5(store, container: str, dataset: str) -> ChunkedArray:
    where = f"{join_uri(container, dataset)}/attributes.json"
    attrs = _json(store, f"{dataset}/attributes.json", where)
    try:
        dims, block, dtype = attrs["dimensions"], attrs["blockSize"], attrs["dataType"]
    except KeyError as e:
        raise TileError(f"{where}: not an N5 dataset (no {e.args[0]!r})") from None
    compression = attrs.get("compression", {"type": "raw"})
    kind = compression.get("type", "raw") if isinstance(compression, dict) else "raw"
    if kind not in _N5_CODECS or dtype not in _N5_TYPES:
        raise TileError(f"{where}: N5 {kind} compression of {dtype} is not supported "
                        f"(compression: {', '.join(_N5_CODECS)})")
    codec = _N5_CODECS[kind](compression)
    return ChunkedArray(container, dataset, to_zyx(dims), to_zyx(block), np.dtype(dtype),
                        np.dtype(dtype).newbyteorder(">"),
                        codec.decode if codec else bytes,
                        lambda index: f"{dataset}/" + "/".join(str(i) for i in to_xyz(index)),
                        n5=True)


def _zarr_level0(store, container: str, group: str) -> str:
    """The path of an OME-Zarr group's first (full-resolution) dataset; a plain array
    is itself."""
    for name in (".zattrs", "zarr.json"):
        try:
            doc = _loads(store.get(f"{group}/{name}"), join_uri(container, f"{group}/{name}"))
        except KeyError:
            continue
        attrs = doc.get("attributes", doc).get("ome", doc.get("attributes", doc))
        scales = attrs.get("multiscales")
        if scales:
            return f"{group}/{scales[0]['datasets'][0]['path']}"
        return group
    where = join_uri(container, group)
    if store.exists(f"{group}/.zarray"):   # a Zarr v2 array without attributes is itself
        return group
    if store.exists(f"{group}/.zgroup"):
        raise TileError(f"{where}: a Zarr group without OME-Zarr multiscales (no .zattrs)")
    if next(iter(store.list(f"{group}/")), None) is None:
        raise TileError(f"{where}: not found")
    raise TileError(f"{where}: not a Zarr group or array (no .zgroup, .zarray or zarr.json)")


def _open_zarr(store, container: str, path: str) -> ChunkedArray:
    where = join_uri(container, path)
    try:
        doc = _loads(store.get(f"{path}/.zarray"), f"{where}/.zarray")
        return _zarr2(container, path, doc, where)
    except KeyError:
        pass
    doc = _json(store, f"{path}/zarr.json", f"{where}/zarr.json")
    if doc.get("node_type") != "array":
        raise TileError(f"{where}: not a Zarr array")
    return _zarr3(container, path, doc, where)


def _drop_lead(shape, chunks) -> tuple[int, tuple, tuple]:
    lead = len(shape) - 3
    if lead < 0 or any(n != 1 for n in shape[:lead]):
        raise TileError(f"expected a 3D view (z, y, x, after axes of size 1), found shape {list(shape)}")
    return lead, tuple(shape[lead:]), tuple(chunks[lead:])


def _zarr2(container: str, path: str, doc: dict, where: str) -> ChunkedArray:
    if doc.get("order", "C") != "C" or doc.get("filters"):
        raise TileError(f"{where}: Zarr arrays with filters or Fortran order are not supported")
    try:
        lead, shape, chunks = _drop_lead(doc["shape"], doc["chunks"])
    except TileError as e:
        raise TileError(f"{where}: {e}") from None
    stored = np.dtype(doc["dtype"])
    codec = numcodecs.get_codec(doc["compressor"]) if doc.get("compressor") else None
    separator = doc.get("dimension_separator", ".")
    return ChunkedArray(container, path, shape, chunks, stored.newbyteorder("="), stored,
                        codec.decode if codec else bytes,
                        lambda index: f"{path}/" + separator.join(str(i) for i in (0,) * lead + tuple(index)),
                        lead, doc.get("fill_value") or 0)


_V3_COMPRESSORS = {"zstd": lambda c: numcodecs.Zstd(c.get("level", 0)),
                   "gzip": lambda c: numcodecs.GZip(c.get("level", 5)),
                   "blosc": lambda c: numcodecs.Blosc()}


def _zarr3(container: str, path: str, doc: dict, where: str) -> ChunkedArray:
    try:
        lead, shape, chunks = _drop_lead(doc["shape"], doc["chunk_grid"]["configuration"]["chunk_shape"])
    except TileError as e:
        raise TileError(f"{where}: {e}") from None
    endian, decoders = "<", []
    for codec in doc.get("codecs", []):
        name, config = codec["name"], codec.get("configuration", {})
        if name == "bytes":
            endian = {"little": "<", "big": ">"}[config.get("endian", "little")]
        elif name in _V3_COMPRESSORS:
            decoders.append(_V3_COMPRESSORS[name](config).decode)
        else:
            raise TileError(f"{where}: the Zarr v3 codec {name!r} is not supported (bytes, "
                            f"{', '.join(_V3_COMPRESSORS)}; resave sharded views unsharded)")
    stored = np.dtype(doc["data_type"]).newbyteorder(endian)
    encoding = doc.get("chunk_key_encoding", {"name": "default"})
    separator = encoding.get("configuration", {}).get("separator", "/" if encoding["name"] == "default" else ".")
    prefix = "c" + separator if encoding["name"] == "default" else ""

    def decode(data: bytes) -> bytes:
        for d in reversed(decoders):
            data = d(data)
        return data
    return ChunkedArray(container, path, shape, chunks, stored.newbyteorder("="), stored, decode,
                        lambda index: f"{path}/{prefix}" + separator.join(str(i) for i in (0,) * lead + tuple(index)),
                        lead, doc.get("fill_value") or 0)


def read_chunked(array: ChunkedArray, region: Box, cache, s3=None) -> np.ndarray:
    """`region` (x, y, z) of a chunked view as a z, y, x array."""
    out = np.empty(to_zyx(region.shape), dtype=array.dtype)
    grid = ChunkGrid(to_xyz(array.shape), to_xyz(array.chunks))
    lo, hi = grid.chunks_touching(region)
    store = open_store(array.container, s3)
    for index in grid_indices(hi, lo):
        box = grid.chunk_box(index)
        values = cache.get(("chunk", array.container, array.path, index),
                           partial(_decode, array, store, to_zyx(index), to_zyx(box.shape)))
        part = box.intersect(region)
        out[part.relative_to(region.start).slices_zyx()] = values[part.relative_to(box.start).slices_zyx()]
    return out


def _decode(array: ChunkedArray, store, index: tuple, shape: tuple) -> np.ndarray:
    """One chunk's values, clipped to the array (z, y, x)."""
    try:
        data = store.get(array.key(index))
    except KeyError:
        return np.full(shape, array.fill, dtype=array.dtype)
    where = join_uri(array.container, array.key(index))
    try:
        full = _chunk_values(array, data, where)
    except TileError:
        raise
    except Exception as e:   # a damaged chunk: say which one, not only what its codec found
        raise TileError(f"{where}: cannot decode this chunk "
                        f"({cause(e)})") from None
    return np.ascontiguousarray(full[tuple(slice(0, n) for n in shape)], dtype=array.dtype)


def _chunk_values(array: ChunkedArray, data: bytes, where: str) -> np.ndarray:
    """A stored chunk's values as an array of its stored shape (N5: the block's own)."""
    if not array.n5:
        return np.frombuffer(array.codec(data), dtype=array.stored).reshape(array.chunks)
    try:
        _, dims, start = n5_block_header(data)
    except ValueError as e:
        raise TileError(f"{where}: {e}") from None
    values = np.frombuffer(array.codec(data[start:]), dtype=array.stored)[:int(np.prod(dims))]
    return values.reshape(dims)


# HDF5 -------------------------------------------------------------------------------

_h5: OrderedDict[str, object] = OrderedDict()


def open_hdf5(path: str, dataset: str, s3=None):
    """The h5py dataset of a view (files kept open per process)."""
    import h5py  # only projects with HDF5 views need it

    if path not in _h5:
        try:
            if is_remote(path):
                from pipelines.tiles.remote import open_remote
                _h5[path] = h5py.File(open_remote(path, s3), "r")
            else:
                _h5[path] = h5py.File(path, "r")
        except (FileNotFoundError, KeyError):
            raise TileError(f"{path}: HDF5 file not found") from None
        except OSError as e:
            # h5py's text of a system error is several lines of its internals (trial Z: a
            # folder named as the file): the system's own words, else its text on one line
            why = os.strerror(e.errno) if e.errno else " ".join(str(e).split())
            raise TileError(f"{path}: cannot read as HDF5: {why}") from None
        if len(_h5) > _OPEN_LIMIT:
            _h5.popitem(last=False)[1].close()  # type: ignore[attr-defined]
    _h5.move_to_end(path)
    f = _h5[path]
    if dataset not in f:  # type: ignore[operator]
        raise TileError(f"{path}: HDF5 dataset {dataset} not found")
    return f[dataset]  # type: ignore[index]


def hdf5_dtype(dataset) -> np.dtype:
    """The values' type: BigDataViewer stores uint16 views as int16 (Java has no unsigned
    short), so int16 is read as uint16."""
    dtype = np.dtype(dataset.dtype)
    return np.dtype("uint16") if dtype == np.dtype("int16") else dtype


def read_hdf5(dataset, region: Box) -> np.ndarray:
    values = dataset[region.slices_zyx()]
    dtype = hdf5_dtype(dataset)
    return values.view(dtype) if values.dtype != dtype else values
