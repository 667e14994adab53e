"""Zarr v3: keys, chunk bytes and zarr.json documents (no I/O).

Chunks are always full size (edges padded with the fill value), encoded by the `bytes`
codec (little endian, C order over z, y, x) and then the compressor. Keys use the
default chunk key encoding with "/": `<path>/c/z/y/x`.
"""

from __future__ import annotations

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
from pipelines.geometry import to_zyx
from pipelines.pixels.mosaic import Region
from pipelines.pixels.value_range import ValueRange

NAME = "zarr3"
ROOT_KEY = "zarr.json"
EDGE_CHUNKS_CUT = False


def chunk_key(spec: ArraySpec, index_xyz: Sequence[int], lead_index: Sequence[int] = ()) -> str:
    """Key of a chunk (or, for a sharded array, of a shard) by its grid index."""
    return f"{spec.path}/c/" + "/".join(str(i) for i in (*lead_index, *to_zyx(index_xyz)))


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


# The index layout pipelines.formats.sharding writes: little-endian entries, then crc32c.
SHARD_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def array_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """The array's zarr.json as (key, bytes): shape, chunk grid (shards when sharded) and
    codecs, in Zarr's z, y, x order."""
    codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
    codecs += spec.compressor.zarr3_json(spec.np_dtype.itemsize)
    grid_shape = spec.chunks_zyx
    if spec.shard is not None:
        # The grid's cells are shards; the chunks and their codecs live inside the shard codec.
        grid_shape = (1,) * len(spec.lead) + to_zyx(tuple(c * s for c, s in zip(spec.chunks, spec.shard)))
        codecs = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": list(spec.chunks_zyx), "codecs": codecs,
            "index_codecs": SHARD_INDEX_CODECS, "index_location": "end"}}]
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(spec.shape_zyx),
        "data_type": spec.dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(grid_shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": spec.fill_value,
        "codecs": codecs,
        "dimension_names": spec.dimension_names,
        # No n5-viewer keys (pixelResolution, stageOriginVoxels): OME's multiscales carry
        # each level's scale and translation, and readers that show Zarr in x, y, z order
        # (n5-zarr) would take z, y, x lists of those keys the wrong way round.
        "attributes": {},
    }
    return [(f"{spec.path}/zarr.json", json_bytes(doc))]


def group_attributes(path: str, attributes: dict) -> list[tuple[str, bytes]]:
    """The group's zarr.json, its attributes inside."""
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return [((f"{path}/" if path else "") + "zarr.json", json_bytes(doc))]


def group_documents(spec: ArraySpec) -> list[tuple[str, bytes]]:
    """zarr.json for every group above the array, deepest first so the root comes last."""
    parts = spec.path.split("/")[:-1]
    prefixes = ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]
    doc = json_bytes({"zarr_format": 3, "node_type": "group", "attributes": {}})
    return [((f"{p}/" if p else "") + "zarr.json", doc) for p in prefixes]
