"""`pipelines.pixels.value_range` against numpy's min and max: `value_range` for every integer
type, C-ordered blocks and boxes of larger arrays (memory maps too), extremes anywhere;
`ValueRange` gathered by the copies that prepare chunks for their codec (`copy_region`)
and over every object of a region as each format encodes it (`encode_region`), fill-value
chunks, edge chunks and shards included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, compressor_for, format_module
from pipelines.formats.objects import encode_region
from pipelines.geometry import Box, to_zyx
from pipelines.pixels import copying, value_range
from pipelines.pixels.value_range import ValueRange

TYPES = ["uint8", "int8", "uint16", ">u2", "int16", "uint32", "int32", "uint64", "int64"]


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(TYPES), shape=st.tuples(*[st.integers(1, 9)] * 3),
       margin=st.tuples(*[st.integers(0, 3)] * 3), seed=st.integers(0, 2**32 - 1))
def test_value_range_is_numpys_min_and_max(dtype, shape, margin, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(np.dtype(dtype))
    big = rng.integers(info.min, info.max, tuple(n + m for n, m in zip(shape, margin)),
                       dtype=np.dtype(dtype).newbyteorder("="), endpoint=True).astype(dtype)
    block = big[tuple(slice(m, m + n) for m, n in zip(margin, shape))]
    if rng.random() < 0.5:   # the type's own extremes at a random voxel
        block[tuple(int(rng.integers(0, n)) for n in shape)] = info.max if rng.random() < 0.5 else info.min
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(value_range, "MIN_BYTES", 0)   # the compiled pass even for small blocks
        low, high = value_range.value_range(block)
    assert (low, high) == (block.min(), block.max())
    assert type(low) is block.dtype.type


def test_value_range_of_large_blocks_memory_maps_and_floats(tmp_path):
    """The sizes real blocks have (above the threshold), a read-only memory-mapped box,
    and float blocks (of their finite values: trial N)."""
    rng = np.random.default_rng(1)
    data = rng.integers(100, 60000, (64, 64, 64), dtype=np.uint16)
    assert data.nbytes >= copying.MIN_BYTES
    data[5, 6, 7], data[60, 1, 2] = 3, 65000
    assert value_range.value_range(data) == (3, 65000)
    path = tmp_path / "tile.raw"
    data.tofile(path)
    mapped = np.memmap(path, np.uint16, "r", shape=data.shape)[2:63, 1:64, 3:60]
    assert value_range.value_range(mapped) == (mapped.min(), mapped.max())
    floats = data.astype(np.float32)
    floats[1, 1, 1], floats[2, 2, 2], floats[3, 3, 3] = np.nan, np.inf, -np.inf
    assert value_range.value_range(floats) == (3, 65000)


def _random_block(rng, dtype: str, shape) -> np.ndarray:
    """Random values of the whole type, the type's own extremes at random voxels half the time."""
    info = np.iinfo(np.dtype(dtype))
    block = rng.integers(info.min, info.max, shape, dtype=np.dtype(dtype).newbyteorder("="),
                         endpoint=True).astype(dtype)
    if rng.random() < 0.5:
        block[tuple(int(rng.integers(0, n)) for n in shape)] = info.max if rng.random() < 0.5 else info.min
    return block


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(TYPES), target=st.sampled_from("<>"), shape=st.tuples(*[st.integers(1, 9)] * 3),
       margin=st.tuples(*[st.integers(0, 3)] * 3), seed=st.integers(0, 2**32 - 1))
def test_copy_region_shows_every_copied_value(dtype, target, shape, margin, seed):
    """The range gathered while copying (in the compiled loop for unsigned native values,
    by a pass of its own for the rest) is numpy's, and the copy is unchanged."""
    rng = np.random.default_rng(seed)
    big = _random_block(rng, dtype, tuple(n + m for n, m in zip(shape, margin)))
    values = big[tuple(slice(m, m + n) for m, n in zip(margin, shape))]
    out = np.empty(shape, np.dtype(dtype).newbyteorder(target))
    seen, passes = ValueRange(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(copying, "MIN_BYTES", 0)   # the compiled loops even for small boxes
        mp.setattr(value_range, "MIN_BYTES", 0)
        mp.setattr(ValueRange, "see", lambda self, v: (passes.append(v), ValueRange.add(self, v.min(), v.max())))
        copying.copy_region(out, values, seen)
    assert np.array_equal(out, values)
    assert seen.numbers() == (values.min(), values.max())
    unsigned_native = values.dtype.kind == "u" and values.dtype.isnative
    assert len(passes) == (0 if unsigned_native else 1)   # the loop compared as it copied


@pytest.mark.parametrize("fmt,shard", [("n5", None), ("zarr2", None), ("zarr3", None), ("zarr3", (2, 1, 2))])
@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int16", "float32"])
def test_encode_region_shows_every_value_of_the_region(fmt, shard, dtype):
    """Over a region of whole objects at the array's far edge (short edge chunks), with
    some chunks all fill value (not encoded, still part of the range) and the extremes in
    one chunk: the range gathered while encoding is the region's min and max. The region is
    large enough for the compiled copies."""
    chunks = (32, 24, 16)                       # x, y, z
    array = (150, 100, 50)                      # not multiples of the chunk
    box = Box((64, 48, 32), array)              # whole chunks (and shards of 2 × 1 × 2)
    spec = ArraySpec("a", array, chunks, dtype, compressor_for(CodecConfig("zstd"), fmt), shard=shard)
    rng = np.random.default_rng(3)
    data = (rng.random(to_zyx(box.shape)) * 100 + 7).astype(dtype)
    assert data.nbytes >= copying.MIN_BYTES // 4
    data[:16, :24, :32] = 0                     # one chunk of fill values: written nowhere
    data[10, 30, 40], data[12, 31, 41] = 200, 3   # extremes inside another chunk
    seen = ValueRange()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(copying, "MIN_BYTES", 0)
        objects = list(encode_region(format_module(fmt), spec, data, box, (), seen))
    assert any(payload is None for _, payload in objects) == (shard is None)
    assert seen.numbers() == (0, 200)
    data[:16, :24, :32] = 5                     # no fill value anywhere: the low end is 3
    seen = ValueRange()
    list(encode_region(format_module(fmt), spec, data, box, (), seen))
    assert seen.numbers() == (3, 200)


def test_value_range_merges_like_numpy():
    """Ranges added one by one give the min and max of them all; NaN is no value (the
    range of floats is of their finite values); nothing seen is an error, not a made-up
    range."""
    seen = ValueRange()
    with pytest.raises(ValueError, match="no values"):
        seen.numbers()
    for low, high in [(np.uint16(5), np.uint16(9)), (np.uint16(2), np.uint16(4)), (np.uint16(6), np.uint16(11))]:
        seen.add(low, high)
    assert seen.numbers() == (2, 11) and all(type(v) is int for v in seen.numbers())
    floats = ValueRange()
    floats.see(np.array([[[1.0, np.nan]]], np.float32))
    floats.see(np.array([[[0.5, 2.0]]], np.float32))
    assert floats.numbers() == (0.5, 2.0)


def test_from_a_zip_the_loops_leave_no_cache_on_disk(tmp_path):
    """Trial AG: from spark-submit's --py-files zip numba kept each application's loops in
    a new folder of the per-user cache (keyed by the zip's path, new every application),
    never read again. From a zip they are compiled in memory only: the same range, and no
    cache index written under the user's cache."""
    import subprocess
    import sys

    from scripts.package_project import build_zip
    from tests.conftest import ROOT
    bundle = build_zip(ROOT / "pipelines", tmp_path / "app-1" / "pipelines.zip")
    probe = ("import numpy as np, pipelines.pixels as p, pipelines.pixels.value_range as v;"
             "low, high = v.value_range(np.arange(2**22, dtype=np.uint16).reshape(64, 256, 256));"
             "print(p.__file__, p.CACHE_ON_DISK, int(low), int(high))")   # 8 MiB: numba's loop
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "HOME": str(tmp_path), "PYTHONPATH": str(bundle)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    where, on_disk, low, high = run.stdout.split()
    assert where.startswith(str(bundle)) and (on_disk, low, high) == ("False", "0", "65535")
    assert not list(tmp_path.rglob("*.nbi")), "numba wrote a cache index"


def test_a_checkout_under_a_folder_named_like_a_zip_keeps_its_cache(tmp_path):
    """Review: a rule on '.zip' in the path turned caching off for a checkout under
    `…/x.zip.d/`; only code that is not a file of its own (a zip, an egg) compiles in
    memory."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT
    shutil.copytree(ROOT / "pipelines", tmp_path / "x.zip.d" / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run([sys.executable, "-c", "import pipelines.pixels as p; print(p.__file__, p.CACHE_ON_DISK)"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "x.zip.d")})
    where, on_disk = run.stdout.split()
    assert where.startswith(str(tmp_path / "x.zip.d")) and on_disk == "True", run.stdout + run.stderr
