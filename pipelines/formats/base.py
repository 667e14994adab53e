"""What every output format is told about the array it writes, and what every format offers."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipelines.formats.codecs import Compressor
from pipelines.geometry import Vec, to_zyx
from pipelines.pixels.mosaic import Mosaic, Region, all_equal, copy_out
from pipelines.pixels.value_range import ValueRange
from pipelines.storage.base import Pieces


@dataclass(frozen=True)
class ArraySpec:
    """One output array, per-axis values in x, y, z. Small and picklable: executors get it."""

    path: str                 # dataset path inside the container, e.g. "c0/s0" or "0"
    shape: Vec                # voxels
    chunks: Vec               # voxels per chunk
    dtype: str                # numpy dtype name, e.g. "uint16"
    compressor: Compressor
    resolution: tuple[float, float, float] = (1.0, 1.0, 1.0)  # µm per voxel
    offset: Vec = (0, 0, 0)   # stage coordinates (voxels) of voxel (0, 0, 0)
    fill_value: int = 0
    # Leading non-spatial axes stored before z, y, x (e.g. t and c in OME-Zarr), each
    # chunked by 1: sizes and names. Empty for plain 3D arrays (N5 is always 3D).
    lead: tuple[int, ...] = ()
    lead_names: tuple[str, ...] = ()
    shard: Vec | None = None  # chunks per shard along x, y, z (Zarr v3 sharding), or None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def shape_zyx(self) -> tuple[int, ...]:
        """The stored array's full shape: lead axes, then z, y, x."""
        return tuple(self.lead) + to_zyx(self.shape)

    @property
    def chunks_zyx(self) -> tuple[int, ...]:
        """The stored chunk shape: 1 along every lead axis, then z, y, x."""
        return (1,) * len(self.lead) + to_zyx(self.chunks)

    @property
    def dimension_names(self) -> list[str]:
        return [*self.lead_names, "z", "y", "x"]


class Format(Protocol):
    """One output format: chunk keys, chunk bytes and metadata documents, no I/O.

    `pipelines.formats.n5`, `.zarr2` and `.zarr3` implement it as modules; `FORMATS`
    maps the config's format names to them.
    """

    NAME: str       # the config's `output.format`
    ROOT_KEY: str   # the document whose presence means a committed dataset
    EDGE_CHUNKS_CUT: bool   # edge chunks stored cut to the array (N5), not padded (Zarr)

    def chunk_key(self, spec: ArraySpec, index_xyz: Sequence[int],
                  lead_index: Sequence[int] = ()) -> str:
        """Key of one stored object (chunk, or shard when sharded) by its grid index."""
        ...

    def encode_chunk(self, spec: ArraySpec, data_zyx: Region,
                     seen: ValueRange | None = None) -> bytes | Pieces:
        """Stored bytes of one chunk's region (edge regions may be smaller than a chunk),
        whole or as `Pieces` (`Store.put` takes both; `bytes()` joins them); `seen`, if
        given, is shown the region's values (while they are copied, if they are)."""
        ...

    def chunk_buffer(self, spec: ArraySpec, shape_zyx: tuple,
                     slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A reused buffer for the encoding of one chunk whose region has `shape_zyx`, and
        the part of it that region's values are copied into (in the buffer's byte order):
        `encode_chunk` in two steps, so that a row of chunks can be copied in one pass
        (`formats.chunk_rows`); `slot` as for `scratch`."""
        ...

    def encode_buffer(self, spec: ArraySpec, buffer: np.ndarray, shape_zyx: tuple) -> bytes | Pieces:
        """The stored bytes of a chunk whose values were copied into `chunk_buffer`'s region."""
        ...

    def decode_chunk(self, spec: ArraySpec, data: bytes) -> np.ndarray:
        """The z, y, x values stored by `encode_chunk`."""
        ...

    def array_documents(self, spec: ArraySpec) -> list[tuple[str, bytes]]:
        """(key, bytes) of the array's metadata documents."""
        ...

    def group_documents(self, spec: ArraySpec) -> list[tuple[str, bytes]]:
        """(key, bytes) of the groups above the array, the root document last."""
        ...

    def group_attributes(self, path: str, attributes: dict) -> list[tuple[str, bytes]]:
        """(key, bytes) of the group at `path` ("" the root) holding `attributes` (a
        layout's viewer metadata)."""
        ...


def json_bytes(doc: dict) -> bytes:
    """Metadata documents as readers expect them: UTF-8 JSON, stable key order."""
    return (json.dumps(doc, indent=2) + "\n").encode()


def is_fill(values: Region, fill, seen: ValueRange | None = None) -> bool:
    """Whether every voxel is the fill value (`mosaic.all_equal`: a float −0.0 is not
    +0.0; such objects are not written); if so,
    `seen`, when given, is shown that value (the chunk's values, which no copy shows it)."""
    found = values.holds_only(fill) if isinstance(values, Mosaic) else all_equal(values, fill)
    if found and seen is not None:
        seen.add(values.dtype.type(fill), values.dtype.type(fill))
    return found


_scratch = threading.local()


def scratch(shape: tuple, dtype: np.dtype, slot: int = 0) -> np.ndarray:
    """A reused array of `shape` and `dtype` for this thread: the copy a chunk needs before
    compression (byte order, padding) is written into it instead of into a fresh 4 MiB
    allocation each time, whose page faults cost as much as the copy (benchmarks/PROFILE.md).
    Buffers alive at once (a row of chunks copied in one pass, `formats.chunk_rows`) take
    different `slot`s. One buffer per type and slot, as large as the largest shape asked
    for (edge chunks are views of its start), so a thread keeps at most a row of chunks per
    type. Valid until this thread's next call with the same type and slot; compress()
    copies out of it."""
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key, size = (np.dtype(dtype).str, slot), math.prod(shape)
    if key not in buffers or buffers[key].size < size:
        buffers[key] = np.empty(size, dtype=dtype)
    return buffers[key][:size].reshape(shape)


def compress(spec: ArraySpec, raw: bytes | np.ndarray) -> bytes:
    return spec.compressor.encode(raw)


def decompress(spec: ArraySpec, data: bytes) -> bytes:
    codec = spec.compressor.numcodec()
    return data if codec is None else bytes(codec.decode(data))


def encode_full_chunk(spec: ArraySpec, data_zyx: Region, seen: ValueRange | None = None) -> bytes:
    """Zarr chunk bytes (v2 and v3 alike): full size, an edge region padded with the fill
    value, little endian, C order over z, y, x, then the compressor. `seen`, if given, is
    shown the region's values (not the padding)."""
    full = to_zyx(spec.chunks)
    if (isinstance(data_zyx, np.ndarray) and data_zyx.shape == full
            and data_zyx.flags.c_contiguous and data_zyx.dtype == _little(spec)):
        if seen is not None:
            seen.see(data_zyx)
        return compress(spec, data_zyx)
    buffer, region = full_chunk_buffer(spec, data_zyx.shape)
    copy_out((region,), data_zyx, seen)
    return encode_full_buffer(spec, buffer, data_zyx.shape)


def full_chunk_buffer(spec: ArraySpec, shape_zyx: tuple, slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Zarr's buffer for one chunk whose region has `shape_zyx` (smaller at the array's far
    edges): a reused full-size little-endian array (`scratch`), padded with the fill value
    outside the region, and the part of it the region's values go to. Its bytes, once
    filled, are `compress(spec, buffer)`."""
    full = to_zyx(spec.chunks)
    buffer = scratch(full, _little(spec), slot)
    if tuple(shape_zyx) != full:
        buffer.fill(spec.fill_value)
    return buffer, buffer[tuple(slice(0, n) for n in shape_zyx)]


def encode_full_buffer(spec: ArraySpec, buffer: np.ndarray, shape_zyx: tuple) -> bytes:
    """Zarr chunk bytes of a `full_chunk_buffer` its region's values were copied into."""
    return compress(spec, buffer)


def _little(spec: ArraySpec) -> np.dtype:
    return spec.np_dtype.newbyteorder("<")


def decode_full_chunk(spec: ArraySpec, data: bytes) -> np.ndarray:
    """The full z, y, x chunk (padding included) stored by `encode_full_chunk`."""
    values = np.frombuffer(decompress(spec, data), dtype=_little(spec))
    return values.reshape(to_zyx(spec.chunks)).astype(spec.np_dtype)
