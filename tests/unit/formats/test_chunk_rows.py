"""`formats.chunk_rows`: chunks side by side along x copied into their buffers in one
pass, then encoded one by one. Every object must hold what encoding its chunks one at a
time gives — rows longer than ROW_CHUNKS, chunks of fill values inside rows, short edge
chunks, every format and sharding — and decode to the region's own values."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, base, compressor_for, format_module, sharding
from pipelines.formats.chunk_rows import ROW_CHUNKS, encode_chunks
from pipelines.formats.objects import encode_region
from pipelines.geometry import Box, ChunkGrid, grid_indices, to_zyx
from pipelines.pixels import copying
from pipelines.pixels.value_range import ValueRange

CHUNKS = (8, 6, 4)             # x, y, z
ARRAY = (8 * 11 + 3, 20, 9)    # 12 chunks along x (the last short): rows longer than ROW_CHUNKS


FILL = 5


def _data(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    data = (rng.random(to_zyx(ARRAY)) * 90 + 10).astype(dtype)
    data[0:4, 0:6, 16:24] = FILL   # chunk x=2 of the first row: all fill, inside the row
    data[4:8, 6:12, 0:8] = FILL    # the first chunk of another row
    data[8, 19, 90] = 250          # the maximum, in the far edge chunk
    data[2, 3, 45] = 1             # the minimum, inside a run of chunks copied together
    return data


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("fmt,shard", [("n5", None), ("zarr2", None), ("zarr3", None),
                                       ("zarr3", (6, 2, 1))])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_rows_of_chunks_hold_what_chunks_encoded_one_by_one_hold(fmt, shard, dtype, compiled,
                                                                 monkeypatch):
    assert ARRAY[0] // CHUNKS[0] > ROW_CHUNKS
    if compiled:
        monkeypatch.setattr(copying, "MIN_BYTES", 0)   # the compiled loop even for these sizes
    module = format_module(fmt)
    spec = ArraySpec("a", ARRAY, CHUNKS, dtype, compressor_for(CodecConfig("zstd"), fmt),
                     fill_value=FILL, shard=shard)
    data = _data(dtype)
    whole = Box((0, 0, 0), ARRAY)
    seen = ValueRange()
    objects = dict(encode_region(module, spec, data, whole, (), seen))
    assert seen.numbers() == (1, 250)

    grid = ChunkGrid(ARRAY, CHUNKS)
    expected_skipped = 0
    for index in grid_indices(grid.counts):
        box = grid.chunk_box(index)
        values = data[box.slices_zyx()]
        if shard is None:
            payload = objects[module.chunk_key(spec, index)]
        else:
            shard_index = tuple(i // s for i, s in zip(index, shard))
            inner = sharding.decode_shard(spec, bytes(objects[module.chunk_key(spec, shard_index)]))
            payload = inner.get(tuple(i % s for i, s in zip(index, shard)))
        if (values == FILL).all():   # all fill: not stored
            assert payload is None
            expected_skipped += 1
            continue
        assert bytes(payload) == bytes(module.encode_chunk(spec, values))   # one at a time
        decoded = module.decode_chunk(spec, bytes(payload))
        inside = tuple(slice(0, n) for n in values.shape)
        np.testing.assert_array_equal(decoded[inside], values)
        padding = np.ones(decoded.shape, bool)   # Zarr's full chunks past the array's edge
        padding[inside] = False
        assert (decoded[padding] == FILL).all()
    assert expected_skipped == 2


def test_a_thread_keeps_one_row_of_chunk_buffers(monkeypatch):
    """Edge chunks of every kind along a row longer than ROW_CHUNKS: the buffers a thread
    keeps for its codec stay one row of full chunks (what plan.memory counts), not one per
    edge shape and position."""
    monkeypatch.setattr(copying, "MIN_BYTES", 0)
    monkeypatch.setattr(base._scratch, "buffers", {}, raising=False)
    spec = ArraySpec("a", (128, 47, 47), (16, 16, 16), "uint16",
                     compressor_for(CodecConfig("raw"), "n5"))
    data = np.random.default_rng(2).integers(1, 9, (47, 47, 128), dtype=np.uint16)
    assert len(list(encode_region(format_module("n5"), spec, data, Box((0, 0, 0), spec.shape)))) == 8 * 3 * 3
    kept = list(base._scratch.buffers.values())
    assert len(kept) == ROW_CHUNKS
    assert sum(b.nbytes for b in kept) == ROW_CHUNKS * 16 ** 3 * 2


def test_a_run_in_the_middle_of_a_region_reads_its_own_columns(monkeypatch):
    """Boxes given relative to a region that does not start at the array's origin."""
    monkeypatch.setattr(copying, "MIN_BYTES", 0)
    module = format_module("n5")
    spec = ArraySpec("a", ARRAY, CHUNKS, "uint16", compressor_for(CodecConfig("raw"), "n5"))
    data = _data("uint16")
    start = (16, 6, 4)
    region = data[4:, 6:, 16:]
    boxes = [Box((x, 6, 4), (x + 8, 12, 8)) for x in range(16, 56, 8)]
    payloads = list(encode_chunks(module, spec, region, start, boxes))
    for box, payload in zip(boxes, payloads):
        assert bytes(payload) == bytes(module.encode_chunk(spec, data[box.slices_zyx()]))
