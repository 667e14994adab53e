"""`execute.tuning.value_range` against numpy's min and max: every integer type, C-ordered
blocks and boxes of larger arrays (memory maps too), extremes anywhere."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import copying
from pipelines.execute import tuning

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
        mp.setattr(tuning, "MIN_BYTES", 0)   # the compiled pass even for small blocks
        low, high = tuning.value_range(block)
    assert (low, high) == (block.min(), block.max())
    assert type(low) is block.dtype.type


def test_value_range_of_large_blocks_memory_maps_and_floats(tmp_path):
    """The sizes real blocks have (above the threshold), a read-only memory-mapped box,
    and float blocks (numpy: NaN propagates)."""
    rng = np.random.default_rng(1)
    data = rng.integers(100, 60000, (64, 64, 64), dtype=np.uint16)
    assert data.nbytes >= copying.MIN_BYTES
    data[5, 6, 7], data[60, 1, 2] = 3, 65000
    assert tuning.value_range(data) == (3, 65000)
    path = tmp_path / "tile.raw"
    data.tofile(path)
    mapped = np.memmap(path, np.uint16, "r", shape=data.shape)[2:63, 1:64, 3:60]
    assert tuning.value_range(mapped) == (mapped.min(), mapped.max())
    floats = data.astype(np.float32)
    floats[1, 1, 1] = np.nan
    low, high = tuning.value_range(floats)
    assert np.isnan(low) and np.isnan(high)
