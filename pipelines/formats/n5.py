"""N5: keys, block bytes and attributes.json documents (no I/O).

Block layout: big-endian header — uint16 mode (0, default), uint16 ndim, ndim × uint32
block size (x first) — then the compressed payload of big-endian values in x-fastest
order. A z, y, x C-order numpy array already is x-fastest, so its bytes are the payload.
Edge blocks are written truncated (header holds the real size), as N5-Java does.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from pipelines.formats.base import ArraySpec, compress, decompress, json_bytes, scratch
from pipelines.geometry import to_xyz
from pipelines.n5_blocks import n5_block_header
from pipelines.pixels.mosaic import Region, copy_out
from pipelines.pixels.value_range import ValueRange
from pipelines.storage.base import Pieces

NAME = "n5"
# N5-Java refuses a root version whose major is above its own; 2.x is read by N5-Java
# 2.x, 3.x and 4.x alike, and we use nothing newer than the 2.x format.
N5_VERSION = "2.5.1"
ROOT_KEY = "attributes.json"
EDGE_CHUNKS_CUT = True   # as N5-Java writes them


def chunk_key(spec: ArraySpec, index_xyz: Sequence[int], lead_index: Sequence[int] = ()) -> str:
    """`path/x/y/z`: N5 keys a block by its grid index in x, y, z order (arrays are 3D)."""
    if lead_index or spec.lead:
        raise ValueError("N5 arrays are 3D: one array per channel and timepoint")
    return f"{spec.path}/" + "/".join(str(i) for i in index_xyz)


def encode_chunk(spec: ArraySpec, data_zyx: Region, seen: ValueRange | None = None) -> Pieces:
    """Block bytes for the real (possibly truncated edge) region of one chunk, as the
    header and the compressed payload (`Pieces`: stores write them one after the other
    rather than copying the payload once more to put the header in front); `seen`, if
    given, is shown its values."""
    buffer, region = chunk_buffer(spec, data_zyx.shape)
    copy_out((region,), data_zyx, seen)   # the byte-order conversion, into a reused buffer
    return encode_buffer(spec, buffer, data_zyx.shape)


def chunk_buffer(spec: ArraySpec, shape_zyx: tuple, slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The reused big-endian buffer of a block of `shape_zyx` (the payload before
    compression), twice: the values fill all of it."""
    buffer = scratch(shape_zyx, spec.np_dtype.newbyteorder(">"), slot)
    return buffer, buffer


def encode_buffer(spec: ArraySpec, buffer: np.ndarray, shape_zyx: tuple) -> Pieces:
    """The block's header and its compressed payload (`encode_chunk`)."""
    dims = to_xyz(shape_zyx)
    header = struct.pack(f">HH{len(dims)}I", 0, len(dims), *dims)
    return Pieces((header, compress(spec, buffer)))


def decode_chunk(spec: ArraySpec, data: bytes) -> np.ndarray:
    """The z, y, x array stored in one of our blocks: what verification decodes and later
    pyramid passes read back (`execute.readback`)."""
    mode, shape, start = n5_block_header(data)
    if mode != 0:   # we write mode 0 only
        raise ValueError(f"unsupported N5 block mode {mode}")
    raw = decompress(spec, data[start:])
    values = np.frombuffer(raw, dtype=spec.np_dtype.newbyteorder(">"))
    return values.reshape(shape).astype(spec.np_dtype)


def array_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """The dataset's attributes.json (with n5-viewer's pixelResolution)."""
    doc = {
        "dimensions": list(spec.shape),
        "blockSize": list(spec.chunks),
        "dataType": spec.dtype,
        "compression": spec.compressor.n5_json(),
        "pixelResolution": {"unit": "um", "dimensions": list(spec.resolution)},
        "stageOriginVoxels": list(spec.offset),  # not "offset": readers take that as physical units
    }
    return [(f"{spec.path}/attributes.json", json_bytes(doc))]


def group_attributes(path: str, attributes: dict) -> list[tuple[str, bytes]]:
    """The group's attributes.json."""
    return [(_under(path, "attributes.json"), json_bytes(attributes))]


def _under(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def group_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """The root group's version attribute, written after every array."""
    return [(ROOT_KEY, json_bytes({"n5": N5_VERSION}))]
