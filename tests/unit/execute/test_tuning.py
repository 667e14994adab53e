"""The executor's per-process settings change no value: keeping freed memory leaves encoded
chunks byte for byte the same."""

import subprocess
import sys


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
