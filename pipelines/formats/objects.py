"""A region of an array → the stored objects that hold it (chunks, or whole shards).

This is where a block's voxels become (key, bytes) pairs. Objects whose voxels all equal
the fill value come out with bytes None: the caller records them as skipped and writes
nothing, and every reader returns the fill value for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.formats import sharding
from pipelines.formats.base import ArraySpec, Format
from pipelines.formats.chunk_rows import encode_chunks
from pipelines.geometry import Box, ChunkGrid, grid_indices
from pipelines.pixels.mosaic import Region
from pipelines.pixels.value_range import ValueRange
from pipelines.storage.base import Pieces


def encode_region(fmt: Format, spec: ArraySpec, data_zyx: Region, box: Box,
                  lead_index: tuple[int, ...] = (), seen: ValueRange | None = None,
                  checksum: bool = False) -> Iterator[tuple[str, bytes | Pieces | None]]:
    """(key, bytes or None) for every object inside `box`, which must hold whole objects
    (chunks, or shards when `spec.shard` is set) except at the array's far edges. A
    shard's bytes come as `Pieces` (`Store.put` writes them without joining them). `seen`,
    if given, is shown every value of `data_zyx` on the way (the region's value range,
    gathered while the chunks are copied for their codec instead of in a pass of its own).
    With `checksum`, a shard's `Pieces` carry their crc32 (`sharding.shard_objects`); a
    chunk, a few MiB at most, is still in cache when its writer sums it."""
    if spec.shard:
        yield from sharding.shard_objects(spec, data_zyx, box, lead_index, seen, checksum)
        return
    grid = ChunkGrid(spec.shape, spec.chunks)
    lo, hi = grid.chunks_touching(box)
    chunks = list(grid_indices(hi, lo))   # x fastest: rows of chunks copied in one pass
    payloads = encode_chunks(fmt, spec, data_zyx, box.start, [grid.chunk_box(c) for c in chunks], seen)
    for chunk, payload in zip(chunks, payloads):
        yield fmt.chunk_key(spec, chunk, lead_index), payload


def object_grid(spec: ArraySpec) -> ChunkGrid:
    """The grid of stored objects: chunks, or shards for a sharded array."""
    if spec.shard:
        return sharding.shard_grid(spec)
    return ChunkGrid(spec.shape, spec.chunks)


