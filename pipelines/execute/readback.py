"""Reading a region of an array we are writing, straight from its stored objects.

Later pyramid stages read the previous level this way, before any metadata exists:
the spec says how objects are keyed and encoded. A missing object is the fill value.
"""

from __future__ import annotations

import numpy as np

from pipelines.formats import sharding
from pipelines.formats.base import ArraySpec, Format
from pipelines.geometry import Box, ChunkGrid, grid_indices, to_zyx
from pipelines.storage import Store


def read_region(fmt: Format, spec: ArraySpec, store: Store, box: Box,
                lead_index: tuple[int, ...] = ()) -> np.ndarray:
    """The voxels of `box` (x, y, z) of one (t, c) array as a z, y, x array."""
    out = np.full(to_zyx(box.shape), spec.fill_value, dtype=spec.np_dtype)
    grid = ChunkGrid(spec.shape, spec.chunks)
    lo, hi = grid.chunks_touching(box)
    shards: dict[str, dict] = {}
    for chunk in grid_indices(hi, lo):
        data = _chunk_bytes(fmt, spec, store, chunk, lead_index, shards)
        if data is None:
            continue
        chunk_box = grid.chunk_box(chunk)
        values = fmt.decode_chunk(spec, data)[tuple(slice(0, n) for n in to_zyx(chunk_box.shape))]
        part = chunk_box.intersect(box)
        out[part.relative_to(box.start).slices_zyx()] = values[part.relative_to(chunk_box.start).slices_zyx()]
    return out


def _chunk_bytes(fmt, spec, store, chunk, lead_index, shards) -> bytes | None:
    """One chunk's stored bytes, from its own object or from inside its shard."""
    if not spec.shard:
        try:
            return store.get(fmt.chunk_key(spec, chunk, lead_index))
        except KeyError:
            return None
    shard = tuple(i // s for i, s in zip(chunk, spec.shard))
    key = fmt.chunk_key(spec, shard, lead_index)
    if key not in shards:  # each shard is fetched once per region
        try:
            shards[key] = sharding.decode_shard(spec, store.get(key))
        except KeyError:
            shards[key] = {}
    return shards[key].get(tuple(i % s for i, s in zip(chunk, spec.shard)))
