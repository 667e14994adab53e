"""The crc32 receipts record is zlib's, also for a shard whose chunks were summed as they
were encoded (pieces summed one after another: test_stores)."""

import zlib

import numpy as np
import pytest

from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, compressor_for, sharding
from pipelines.geometry import Box
from pipelines.storage.checksum import crc32


def test_the_receipt_crc32_is_zlibs():
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 4096, 3 * 2**20 + 5):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32(data) == zlib.crc32(data)
        assert crc32(memoryview(data)) == zlib.crc32(data)


@pytest.mark.parametrize("codec", ["zstd", "raw"])
def test_a_shard_summed_while_encoded_has_the_crc32_of_its_bytes(codec):
    """Eight shards, edge shards with chunks past the array's end and one with an all-fill
    chunk left out: the value summed chunk by chunk is the crc32 of the object as stored."""
    shape_zyx, chunks, shard = (11, 19, 27), (8, 6, 4), (2, 3, 2)
    spec = ArraySpec("a", tuple(reversed(shape_zyx)), chunks, "uint16",
                     compressor_for(CodecConfig(codec), "zarr3"), shard=shard)
    volume = np.random.default_rng(3).integers(1, 4000, shape_zyx, dtype=np.uint16)
    volume[:4, :6, :8] = 0   # one inner chunk all fill: left out of its shard
    box = Box((0, 0, 0), spec.shape)
    summed = list(sharding.shard_objects(spec, volume, box, checksum=True))
    plain = list(sharding.shard_objects(spec, volume, box))
    assert [k for k, _ in summed] == [k for k, _ in plain] and len(summed) == 8
    for (key, pieces), (_, same) in zip(summed, plain):
        assert pieces.crc32 is not None and same.crc32 is None, key
        assert bytes(pieces) == bytes(same)
        assert crc32(pieces) == zlib.crc32(bytes(pieces)) == crc32(same), key
