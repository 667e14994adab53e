"""The executor's per-process settings change no value: the crc32 receipts record is zlib's,
and keeping freed memory leaves encoded chunks byte for byte the same."""

import subprocess
import sys
import zlib

import numpy as np

from pipelines.execute.tuning import crc32


def test_the_receipt_crc32_is_zlibs():
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 4096, 3 * 2**20 + 5):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32(data) == zlib.crc32(data)
        assert crc32(memoryview(data)) == zlib.crc32(data)


def test_keeping_freed_memory_changes_no_chunk_bytes():
    """In a fresh interpreter, as on an executor: the same chunks before and after."""
    code = """
import numpy as np
from pipelines.config import CodecConfig
from pipelines.execute.tuning import keep_freed_memory
from pipelines.formats import ArraySpec, compressor_for, format_module
data = np.random.default_rng(1).poisson(300, (128, 128, 128)).astype("uint16")
found = []
for tuned in (False, True):
    if tuned:
        assert keep_freed_memory() in (True, False)
        assert keep_freed_memory() == keep_freed_memory()
    for fmt, codec in (("n5", CodecConfig("blosc", (("cname", "lz4"),))), ("zarr3", CodecConfig("zstd"))):
        spec = ArraySpec("a", (128, 128, 128), (128, 128, 128), "uint16", compressor_for(codec, fmt))
        found.append(format_module(fmt).encode_chunk(spec, data))
print(found[:2] == found[2:])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"
