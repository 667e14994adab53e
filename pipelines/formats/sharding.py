"""Zarr v3 sharding (`sharding_indexed`): shard objects and their index (pure code, no I/O).

A shard holds `spec.shard` inner chunks along x, y, z. Its object is the present inner
chunks, each encoded exactly as an unsharded Zarr v3 chunk (`zarr3.encode_chunk`),
concatenated in C order of the inner grid (z slowest, x fastest), then the index:
one little-endian uint64 (offset, nbytes) pair per inner chunk of a FULL shard, in C order
over (lead 1s,) z, y, x, followed by the crc32c of the index as 4 little-endian bytes — the
layout `zarr3.array_documents` declares (index codecs `bytes` little + `crc32c`, index at
the end). Offsets count from the start of the shard object; an absent inner chunk has
offset = nbytes = 2**64 - 1. A shard without data is not written at all.

Shard keys use the same key encoding as chunks, with the shard's grid index:
`zarr3.chunk_key(spec, shard_index_xyz, lead_index)` → `<path>/c/<lead…>/z/y/x`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numcodecs import CRC32C

from pipelines.formats import zarr3
from pipelines.formats.base import ArraySpec
from pipelines.formats.chunk_rows import encode_chunks
from pipelines.geometry import Box, ChunkGrid, Vec, grid_indices, to_zyx
from pipelines.pixels.mosaic import Region
from pipelines.pixels.value_range import ValueRange
from pipelines.storage.base import Pieces
from pipelines.storage.checksum import running_crc32

ABSENT = 2**64 - 1
ENTRY_BYTES = 16  # one (offset, nbytes) pair of uint64
CRC_BYTES = 4
# numcodecs' Checksum32 base class puts the checksum first; the zarr v3 crc32c codec
# appends it, so say "end" explicitly rather than trust a subclass default.
_CRC = CRC32C(location="end")


def inner_counts(spec: ArraySpec) -> Vec:
    """Inner chunks per shard along x, y, z; an error for an array that is not sharded."""
    if spec.shard is None:
        raise ValueError(f"array {spec.path!r} is not sharded (spec.shard is None)")
    return spec.shard


def shard_shape(spec: ArraySpec) -> Vec:
    """Voxels per shard along x, y, z: chunk shape × chunks per shard."""
    return tuple(c * s for c, s in zip(spec.chunks, inner_counts(spec)))


def shard_grid(spec: ArraySpec) -> ChunkGrid:
    """The grid of shards over the array (x, y, z); edge shards are clipped to the array.

    Key a shard with `zarr3.chunk_key(spec, shard_index_xyz, lead_index)`.
    """
    return ChunkGrid(tuple(spec.shape), shard_shape(spec))


def index_nbytes(spec: ArraySpec) -> int:
    """Size of a shard's index with its checksum: 16 bytes per inner chunk + 4."""
    return ENTRY_BYTES * int(np.prod(inner_counts(spec))) + CRC_BYTES


def encode_shard(spec: ArraySpec, inner: dict, inner_crc32: int | None = None) -> Pieces | None:
    """One shard object from its encoded inner chunks, or None when `inner` is empty: the
    present inner chunks in order, then the index, as `Pieces` (stores write them without
    joining them; `bytes()` joins).

    `inner` maps an inner chunk's index within the shard (x, y, z) to its bytes as
    `zarr3.encode_chunk` makes them; inner chunks missing from `inner` are marked absent.
    `inner_crc32`, if given, is zlib's crc32 of the present inner chunks one after another
    in C order (as `shard_objects` sums them): the shard's own crc32 then comes with it
    (`Pieces.crc32`) without reading its chunks again.
    """
    if not inner:
        return None
    counts = inner_counts(spec)
    unknown = [i for i in inner if any(not 0 <= a < n for a, n in zip(i, counts))]
    if unknown or any(len(i) != 3 for i in inner):
        raise ValueError(f"inner chunk indices {sorted(inner)} outside shard {counts}")
    entries = np.full((int(np.prod(counts)), 2), ABSENT, dtype="<u8")
    parts, offset = [], 0
    for n, index in enumerate(grid_indices(counts)):  # x fastest = C order over z, y, x
        if index in inner:
            entries[n] = (offset, len(inner[index]))
            parts.append(inner[index])
            offset += len(inner[index])
    parts.append(bytes(_CRC.encode(entries.tobytes())))
    return Pieces(parts, None if inner_crc32 is None else running_crc32(parts[-1], inner_crc32))


def decode_shard(spec: ArraySpec, data: bytes) -> dict:
    """The inner chunks of a shard object: index within the shard (x, y, z) → bytes.

    Raises ValueError if the object is too short, its index checksum does not match, or an
    index entry points outside the payload.
    """
    entries, payload_end = _read_index(spec, data)
    chunks = {}
    for (offset, nbytes), index in zip(entries.tolist(), grid_indices(inner_counts(spec))):
        if offset == ABSENT and nbytes == ABSENT:
            continue
        if offset + nbytes > payload_end:
            raise ValueError(f"shard index entry {index} ({offset}, {nbytes}) points past "
                             f"the payload of {payload_end} bytes")
        chunks[index] = bytes(data[offset:offset + nbytes])
    return chunks


def _read_index(spec: ArraySpec, data: bytes) -> tuple[np.ndarray, int]:
    """The (n, 2) index entries of a shard and where its payload ends."""
    size = index_nbytes(spec)
    if len(data) < size:
        raise ValueError(f"shard object of {len(data)} bytes is shorter than its "
                         f"{size}-byte index")
    try:
        raw = bytes(_CRC.decode(data[len(data) - size:]))
    except RuntimeError as err:  # numcodecs reports a checksum mismatch as RuntimeError
        raise ValueError(f"shard index checksum mismatch: {err}") from None
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2), len(data) - size


def shard_objects(spec: ArraySpec, data_zyx: Region, box: Box, lead_index: Vec = (),
                  seen: ValueRange | None = None,
                  checksum: bool = False) -> Iterator[tuple[str, Pieces | None]]:
    """(key, shard bytes as `Pieces`) for every shard `box` covers; None when a shard is all fill.

    `box` (x, y, z voxels) must consist of whole shards, except that it may end at the
    array's far edge; `data_zyx` holds its values (shape z, y, x of `box.shape`). Inner
    chunks whose values all equal `spec.fill_value` are left out of their shard. `seen`,
    if given, is shown every value of `data_zyx`. With `checksum`, each shard's crc32
    comes with it (`Pieces.crc32`), summed chunk by chunk as they leave their codec.
    """
    _check_region(spec, box, data_zyx, lead_index)
    grid = shard_grid(spec)
    lo, hi = grid.chunks_touching(box)
    for shard in grid_indices(hi, lo):
        inner, inner_crc32 = _inner_chunks(spec, data_zyx, box, grid.chunk_box(shard), seen, checksum)
        yield zarr3.chunk_key(spec, shard, lead_index), encode_shard(spec, inner, inner_crc32)


def _inner_chunks(spec: ArraySpec, data_zyx: Region, box: Box, shard_box: Box,
                  seen: ValueRange | None = None, checksum: bool = False
                  ) -> tuple[dict, int | None]:
    """The encoded, not-all-fill inner chunks of one shard, by index within the shard, and
    (with `checksum`) zlib's crc32 of them one after another, in the order the shard holds
    them (C order, as `encode_shard` lays them out)."""
    indices, chunks = [], []
    for index in grid_indices(inner_counts(spec)):   # x fastest: rows copied in one pass
        start = tuple(s + i * c for s, i, c in zip(shard_box.start, index, spec.chunks))
        chunk = Box.from_shape(start, spec.chunks).intersect(shard_box)
        if not chunk.is_empty():   # else an edge shard's inner chunk wholly past the array's end
            indices.append(index)
            chunks.append(chunk)
    inner, crc = {}, 0 if checksum else None
    for index, payload in zip(indices, encode_chunks(zarr3, spec, data_zyx, box.start, chunks, seen)):
        if payload is not None:
            inner[index] = payload
            if crc is not None:   # now, while the codec's output is in cache
                crc = running_crc32(payload, crc)
    return inner, crc


def _check_region(spec: ArraySpec, box: Box, data_zyx: Region, lead_index: Vec) -> None:
    """Refuse a box that would split a shard: two tasks must never write the same shard."""
    fits = all(0 <= i < n for i, n in zip(lead_index, spec.lead))
    if len(lead_index) != len(spec.lead) or not fits:
        raise ValueError(f"lead index {lead_index} does not fit lead axes {spec.lead}")
    step = shard_shape(spec)
    starts_ok = all(a % s == 0 for a, s in zip(box.start, step))
    stops_ok = all(b % s == 0 or b == n for b, s, n in zip(box.stop, step, spec.shape))
    inside = all(0 <= a < b <= n for a, b, n in zip(box.start, box.stop, spec.shape))
    if not (starts_ok and stops_ok and inside):
        raise ValueError(f"box {box.start}..{box.stop} is not made of whole shards of "
                         f"{step} voxels inside the array {spec.shape}")
    if data_zyx.shape != to_zyx(box.shape):
        raise ValueError(f"data shape {data_zyx.shape} (z, y, x) does not match box "
                         f"shape {box.shape} (x, y, z)")
