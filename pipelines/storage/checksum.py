"""The crc32 receipts record for every stored object: zlib's value, of its bytes whole
or as `Pieces`, computed by zlib-ng when imagecodecs has it.

zlib-ng gives the same number about 3 × faster than the system zlib 1.2 (0.15 against
0.52 ms per 2 MiB object, benchmarks/PROFILE.md). A shard's crc32 can be known before it
is written: `sharding.shard_objects(..., checksum=True)` sums each inner chunk as it comes
out of its codec, still in cache, rather than all 140 MiB again from memory (14.6 against
7.6 ms per 512³ blosc-lz4 shard, PROFILE.md "Receipts' checksums").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from pipelines.storage.base import Pieces


def _fastest() -> Callable[..., int]:
    """`f(data, value=0)`: zlib's crc32 of `data`, continued from a running `value`."""
    try:
        from imagecodecs import zlibng_crc32
        # one buffer, and one continued from a running value (how `Pieces` are summed)
        if (zlibng_crc32(b"123456789") == zlib.crc32(b"123456789")
                == zlibng_crc32(b"6789", zlibng_crc32(b"12345"))):
            return zlibng_crc32
    except (ImportError, AttributeError, RuntimeError):
        pass
    return zlib.crc32


running_crc32 = _fastest()


def crc32(data: bytes | Pieces) -> int:
    """zlib's crc32 of an object's bytes, given whole or as `Pieces` (not joined for it;
    the value their maker summed on the way when it did)."""
    if isinstance(data, Pieces):
        if data.crc32 is not None:
            return data.crc32
        value = 0
        for part in data.parts:
            value = running_crc32(part, value)
        return value
    return running_crc32(data)
