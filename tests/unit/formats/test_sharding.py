"""Zarr v3 sharding: what we write opens in tensorstore and zarr-python, and our shard
layout matches the one tensorstore writes itself.

Index facts are checked by hand here (numpy over the raw bytes, google_crc32c for the
checksum) rather than through our own decode_shard, so a shared mistake cannot hide.
"""

from __future__ import annotations

import json

import google_crc32c
import numpy as np
import pytest
import tensorstore as ts

from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, compressor_for, sharding, zarr3
from pipelines.geometry import Box, to_xyz, to_zyx
from pipelines.storage import LocalStore
from tests.readers import tensorstore_read, zarr_read

ABSENT = 2**64 - 1
# Chunks (x, y, z) and chunks per shard chosen unequal per axis so an axis mix-up shows.
CHUNKS = (8, 6, 4)
SHARD = (2, 3, 2)            # a shard is 16 × 18 × 8 voxels
SHAPE_ZYX = (11, 19, 27)     # a multiple of neither chunk nor shard along any axis


def make_spec(shape_zyx, dtype="uint16", codec="zstd", chunks=CHUNKS, shard=SHARD,
              lead=(), lead_names=(), path="data/s0") -> ArraySpec:
    return ArraySpec(path, to_xyz(shape_zyx[len(lead):]), chunks, dtype,
                     compressor_for(CodecConfig(codec), "zarr3"),
                     lead=lead, lead_names=lead_names, shard=shard)


def write_sharded(root, spec: ArraySpec, volume: np.ndarray) -> dict:
    """Write `volume` (lead axes, z, y, x) shard by shard as block tasks would, then
    metadata; return every shard's key → bytes (None for a shard that was skipped)."""
    store, written = LocalStore(root), {}
    grid = sharding.shard_grid(spec)
    for lead_index in np.ndindex(*spec.lead):
        for shard in np.ndindex(*grid.counts):
            box = grid.chunk_box(shard)
            values = volume[lead_index][box.slices_zyx()]
            for key, data in sharding.shard_objects(spec, values, box, lead_index):
                written[key] = None if data is None else bytes(data)   # Pieces, joined
                if data is not None:
                    store.put(key, data)   # written piece by piece
    for key, doc in zarr3.array_documents(spec) + zarr3.group_documents(spec):
        store.put(key, doc)
    return written


def random_volume(shape_zyx, dtype, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hi = min(np.iinfo(dtype).max, 60000) if np.dtype(dtype).kind == "u" else 1000.0
    return (rng.random(shape_zyx) * hi + 1).astype(dtype)  # + 1: no accidental fill chunks


def hand_index(spec: ArraySpec, data: bytes) -> np.ndarray:
    """The index entries of a shard object, read with numpy alone: shape z, y, x, 2."""
    n = int(np.prod(spec.shard))
    raw, crc = data[-(16 * n + 4):-4], data[-4:]
    assert google_crc32c.value(raw) == int.from_bytes(crc, "little")
    return np.frombuffer(raw, dtype="<u8").reshape(*to_zyx(spec.shard), 2)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("codec", ["raw", "zstd", "gzip", "blosc"])
def test_readers_read_sharded_arrays_with_edge_shards(tmp_path, codec, dtype):
    volume = random_volume(SHAPE_ZYX, dtype)
    spec = make_spec(SHAPE_ZYX, dtype, codec)
    written = write_sharded(tmp_path, spec, volume)
    assert len(written) == 2 * 2 * 2 and all(v is not None for v in written.values())
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path), "data/s0", "zarr3"), volume)
    np.testing.assert_array_equal(zarr_read(str(tmp_path), "data/s0"), volume)


def test_sharded_metadata_declares_shard_grid_and_inner_codecs():
    spec = make_spec(SHAPE_ZYX, "uint16", "zstd")
    (key, doc), = zarr3.array_documents(spec)
    meta = json.loads(doc)
    assert key == "data/s0/zarr.json"
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [8, 18, 16]  # z, y, x
    assert meta["codecs"] == [{"name": "sharding_indexed", "configuration": {
        "chunk_shape": [4, 6, 8],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "zstd", "configuration": {"level": 3, "checksum": False}}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                         {"name": "crc32c"}],
        "index_location": "end"}}]
    unsharded = json.loads(zarr3.array_documents(make_spec(SHAPE_ZYX, shard=None))[0][1])
    assert unsharded["chunk_grid"]["configuration"]["chunk_shape"] == [4, 6, 8]
    assert [c["name"] for c in unsharded["codecs"]] == ["bytes", "zstd"]


def test_empty_shards_are_absent_and_empty_inner_chunks_marked(tmp_path):
    volume = random_volume(SHAPE_ZYX, "uint16")
    volume[0:8, 0:18, 16:27] = 0   # the whole shard z=0, y=0, x=1
    volume[0:4, 6:12, 0:8] = 0     # inner chunk z=0, y=1, x=0 of shard (0, 0, 0)
    volume[4:8, 12:18, 8:16] = 0   # inner chunk z=1, y=2, x=1 of shard (0, 0, 0)
    spec = make_spec(SHAPE_ZYX, "uint16", "zstd")
    written = write_sharded(tmp_path, spec, volume)

    empty_key = "data/s0/c/0/0/1"
    assert empty_key in written and written[empty_key] is None
    assert not (tmp_path / empty_key).exists()
    data = (tmp_path / "data/s0/c/0/0/0").read_bytes()
    index = hand_index(spec, data)
    absent = {(0, 1, 0), (1, 2, 1)}  # z, y, x within the shard
    for zyx in np.ndindex(*index.shape[:3]):
        offset, nbytes = (int(v) for v in index[zyx])
        if zyx in absent:
            assert offset == nbytes == ABSENT
            continue
        chunk = zarr3.decode_chunk(spec, data[offset:offset + nbytes])
        start = [i * c for i, c in zip(zyx, to_zyx(CHUNKS))]
        expected = volume[tuple(slice(a, a + c) for a, c in zip(start, to_zyx(CHUNKS)))]
        np.testing.assert_array_equal(chunk, expected)
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path), "data/s0", "zarr3"), volume)
    np.testing.assert_array_equal(zarr_read(str(tmp_path), "data/s0"), volume)


def test_edge_shard_index_covers_a_full_shard(tmp_path):
    spec = make_spec(SHAPE_ZYX, "uint16", "raw")
    write_sharded(tmp_path, spec, random_volume(SHAPE_ZYX, "uint16"))
    data = (tmp_path / "data/s0/c/1/1/1").read_bytes()  # 3 × 1 × 11 voxels of a 8 × 18 × 16 shard
    index = hand_index(spec, data)
    assert index.shape == (2, 3, 2, 2)
    present = {zyx for zyx in np.ndindex(2, 3, 2) if index[zyx][0] != ABSENT}
    assert present == {(0, 0, 0), (0, 0, 1)}  # the rest lies past the array's end
    # Inner chunks are full size (padded), as unsharded Zarr v3 chunks are.
    assert all(int(index[zyx][1]) == 8 * 6 * 4 * 2 for zyx in present)


def test_index_size_round_trip_and_corruption():
    spec = make_spec(SHAPE_ZYX, "uint8", "raw")
    inner = {(0, 0, 0): b"a" * 10, (1, 2, 0): b"bb" * 7, (1, 0, 1): b"c" * 3}
    data = bytes(sharding.encode_shard(spec, inner))   # its pieces, joined as a store holds them
    n = 2 * 3 * 2
    assert len(data) == sum(map(len, inner.values())) + 16 * n + 4
    assert sharding.index_nbytes(spec) == 16 * n + 4
    # C order over the inner grid: z slowest, x fastest, so (x=1, y=2, z=0) precedes (1, 0, 1).
    assert data[:27] == b"a" * 10 + b"bb" * 7 + b"c" * 3
    assert sharding.decode_shard(spec, data) == inner
    assert sharding.encode_shard(spec, {}) is None
    for position in (len(data) - 16 * n - 4, len(data) - 20, len(data) - 1):  # index, crc
        corrupted = bytearray(data)
        corrupted[position] ^= 0x01
        with pytest.raises(ValueError, match="checksum"):
            sharding.decode_shard(spec, bytes(corrupted))
    with pytest.raises(ValueError, match="shorter"):
        sharding.decode_shard(spec, data[-100:])
    with pytest.raises(ValueError, match="outside shard"):
        sharding.encode_shard(spec, {(2, 0, 0): b"x"})


def test_lead_axes_every_time_and_channel(tmp_path):
    shape = (2, 3) + SHAPE_ZYX
    volume = random_volume(shape, "uint16")
    volume[1, 2] = 0  # one whole (t, c) volume empty: no shard written for it
    spec = make_spec(shape, "uint16", "zstd", lead=(2, 3), lead_names=("t", "c"))
    written = write_sharded(tmp_path, spec, volume)
    assert "data/s0/c/1/0/0/0/0" in written and (tmp_path / "data/s0/c/1/0/0/0/0").is_file()
    assert all(written[k] is None for k in written if k.startswith("data/s0/c/1/2/"))
    meta = json.loads((tmp_path / "data/s0/zarr.json").read_text())
    assert meta["dimension_names"] == ["t", "c", "z", "y", "x"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 8, 18, 16]
    data = (tmp_path / "data/s0/c/0/1/0/0/0").read_bytes()
    assert len(sharding.decode_shard(spec, data)) == 2 * 3 * 2
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path), "data/s0", "zarr3"), volume)
    np.testing.assert_array_equal(zarr_read(str(tmp_path), "data/s0"), volume)


def test_one_box_of_many_shards_gives_the_same_objects(tmp_path):
    volume = random_volume(SHAPE_ZYX, "uint16")
    spec = make_spec(SHAPE_ZYX, "uint16", "zstd")
    per_shard = write_sharded(tmp_path, spec, volume)
    whole = dict(sharding.shard_objects(spec, volume, Box((0, 0, 0), spec.shape)))
    assert whole == per_shard
    # A box of two shards along y reaching the array's far edge is aligned too.
    box = Box((0, 0, 0), (16, 19, 8))
    keys = [k for k, _ in sharding.shard_objects(spec, volume[box.slices_zyx()], box)]
    assert keys == ["data/s0/c/0/0/0", "data/s0/c/0/1/0"]


@pytest.mark.parametrize("box", [
    Box((8, 0, 0), (24, 18, 8)),      # starts inside a shard
    Box((0, 0, 0), (16, 12, 8)),      # stops inside a shard, not at the array's edge
    Box((0, 0, 0), (32, 18, 8)),      # runs past the array
])
def test_shard_objects_refuses_boxes_that_split_shards(box):
    spec = make_spec(SHAPE_ZYX)
    data = np.zeros(to_zyx(box.shape), dtype="uint16")
    with pytest.raises(ValueError, match="whole shards"):
        list(sharding.shard_objects(spec, data, box))


def test_shard_objects_refuses_wrong_data_shape_or_lead_index():
    spec = make_spec(SHAPE_ZYX)
    box = Box((0, 0, 0), (16, 18, 8))
    with pytest.raises(ValueError, match="data shape"):
        list(sharding.shard_objects(spec, np.zeros(box.shape, dtype="uint16"), box))
    with pytest.raises(ValueError, match="lead index"):
        list(sharding.shard_objects(spec, np.zeros(to_zyx(box.shape), "uint16"), box, (0,)))


@pytest.mark.parametrize("codec", ["raw", "zstd"])
def test_decode_shard_reads_shards_tensorstore_wrote(tmp_path, codec):
    volume = random_volume(SHAPE_ZYX, "uint16")
    volume[0:4, 6:12, 0:8] = 0  # an inner chunk tensorstore should leave out, as we do
    spec = make_spec(SHAPE_ZYX, "uint16", codec)
    ours = write_sharded(tmp_path / "ours", spec, volume)
    meta = json.loads(zarr3.array_documents(spec)[0][1])
    array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "ts")},
                     "metadata": meta, "create": True}).result()
    array.write(volume).result()
    theirs = {f"data/s0/{p.relative_to(tmp_path / 'ts').as_posix()}": p.read_bytes()
              for p in (tmp_path / "ts" / "c").rglob("*") if p.is_file()}
    assert sorted(theirs) == sorted(ours)
    for key, data in theirs.items():
        inner, expected = sharding.decode_shard(spec, data), sharding.decode_shard(spec, ours[key])
        assert sorted(inner) == sorted(expected)
        for index, chunk in inner.items():
            np.testing.assert_array_equal(zarr3.decode_chunk(spec, chunk),
                                          zarr3.decode_chunk(spec, expected[index]))
        if codec == "raw":  # no compressor choices left: the objects are byte-identical
            assert data == ours[key]
