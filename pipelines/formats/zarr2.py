"""Zarr v2: keys, chunk bytes and .zarray/.zgroup documents (no I/O).

Chunks are always full size (edges padded with the fill value), C order over the lead
axes then z, y, x, little endian, then the compressor. Keys are nested (dimension
separator "/", as OME-NGFF 0.4 wants): `<path>/<lead...>/z/y/x`. Lead axes (t, c) are
chunked by 1, so one chunk holds one 3D block of one timepoint and channel.

The compressor JSON is the numcodecs config zarr-python writes and tensorstore accepts;
tensorstore refuses members it does not know, so zstd carries no "checksum" key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipelines.formats.base import (
    ArraySpec,
    decode_full_chunk,
    encode_full_buffer,
    encode_full_chunk,
    full_chunk_buffer,
    json_bytes,
)
from pipelines.formats.codecs import BLOSC_SHUFFLE, Compressor
from pipelines.geometry import to_zyx
from pipelines.pixels.mosaic import Region
from pipelines.pixels.value_range import ValueRange

NAME = "zarr2"
ROOT_KEY = ".zgroup"
EDGE_CHUNKS_CUT = False


def compressor_config(compressor: Compressor) -> dict | None:
    """The `.zarray` `compressor` member (None for raw): what `Compressor.numcodec()` writes."""
    if compressor.name == "raw":
        return None
    if compressor.name == "blosc":
        return {"id": "blosc", "cname": compressor.cname, "clevel": compressor.level,
                "shuffle": BLOSC_SHUFFLE[compressor.shuffle], "blocksize": compressor.blocksize}
    if compressor.name in ("gzip", "zstd"):
        return {"id": compressor.name, "level": compressor.level}
    # config.codecs.FORMAT_CODECS offers zarr2 no other codec
    raise ValueError(f"codec {compressor.name!r} has no zarr2 form")


def dtype_string(dtype: str) -> str:
    """The v2 `dtype` of a numpy type name: little endian ("<u2", "<f4"; "|u1" for bytes)."""
    return np.dtype(dtype).newbyteorder("<").str


def fill_value_json(spec: ArraySpec):
    """The fill value as v2 JSON: an int for integer types, a float (or "NaN", "Infinity",
    "-Infinity", which JSON cannot spell as numbers) for floating types."""
    if spec.np_dtype.kind != "f":
        return int(spec.fill_value)
    value = float(spec.fill_value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def chunk_key(spec: ArraySpec, index_xyz: Sequence[int], lead_index: Sequence[int] = ()) -> str:
    """Key of a chunk by its grid index (x, y, z) and its lead (t, c) index."""
    if len(lead_index) != len(spec.lead):
        raise ValueError(f"{spec.path}: expected {len(spec.lead)} lead indices, got {lead_index!r}")
    return f"{spec.path}/" + "/".join(str(i) for i in (*lead_index, *to_zyx(index_xyz)))


def encode_chunk(spec: ArraySpec, data_zyx: Region, seen: ValueRange | None = None) -> bytes:
    """Chunk bytes; an edge region smaller than the chunk is padded with the fill value.
    `seen`, if given, is shown the region's values."""
    return encode_full_chunk(spec, data_zyx, seen)


# A chunk in two steps (`Format.chunk_buffer`): the same for Zarr v2 and v3.
chunk_buffer = full_chunk_buffer
encode_buffer = encode_full_buffer


def decode_chunk(spec: ArraySpec, data: bytes) -> np.ndarray:
    """The full z, y, x chunk stored in `data` (padding included)."""
    return decode_full_chunk(spec, data)


def array_metadata(spec: ArraySpec) -> dict:
    """The `.zarray` document as a dict."""
    return {
        "zarr_format": 2,
        "shape": list(spec.shape_zyx),
        "chunks": list(spec.chunks_zyx),
        "dtype": dtype_string(spec.dtype),
        "compressor": compressor_config(spec.compressor),
        "fill_value": fill_value_json(spec),
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }


def array_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """The array's `.zarray` (no `.zattrs`: OME metadata lives on the image group)."""
    return [(f"{spec.path}/.zarray", json_bytes(array_metadata(spec)))]


def group_attributes(path: str, attributes: dict) -> list[tuple[str, bytes]]:
    """The group's `.zattrs`, then its `.zgroup`."""
    prefix = f"{path}/" if path else ""
    return [(f"{prefix}.zattrs", json_bytes(attributes)),
            (f"{prefix}.zgroup", json_bytes({"zarr_format": 2}))]


def group_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """`.zgroup` for every group above the array, deepest first so the root comes last."""
    parts = spec.path.split("/")[:-1]
    prefixes = ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]
    doc = json_bytes({"zarr_format": 2})
    return [((f"{p}/" if p else "") + ".zgroup", doc) for p in prefixes]
