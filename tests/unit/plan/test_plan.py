"""Planning properties: blocks tile the volume once, chunks have one owner, overlaps are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipelines.config import CodecConfig
from pipelines.errors import PlanError
from pipelines.formats import ArraySpec, compressor_for
from pipelines.geometry import BlockGrid, Box, ChunkGrid, grid_indices, voxel_count
from pipelines.plan import (
    ExportPlan,
    OutputSpec,
    Stage,
    check_memory,
    plan_tasks,
    task_memory_bytes,
)
from pipelines.tiles import Tile, TileSet

triples = st.tuples(*[st.integers(1, 12)] * 3)


def block_tasks(output, stages, tiles, blocks_per_task=0):
    """Every block task of the plan, partition by partition."""
    return list(plan_tasks(output, stages, tiles, blocks_per_task).block_tasks())


def single_level_output(shape, chunk, per_block, offset=(0, 0, 0)) -> OutputSpec:
    """One level of `shape` whose voxel 0 is at stage position `offset`."""
    spec = ArraySpec("", tuple(shape), tuple(chunk), "uint16", compressor_for(CodecConfig("raw"), "n5"),
                     offset=tuple(offset))
    return OutputSpec("out", "n5", "n5-viewer", spec, tuple(per_block), (tuple(shape),), ((1, 1, 1),))


@settings(max_examples=150, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 40)] * 3), chunk=triples, per_block=triples)
def test_blocks_cover_the_volume_exactly_once(shape, chunk, per_block):
    grid = BlockGrid(ChunkGrid(shape, chunk), per_block)
    painted = np.zeros(shape[::-1], dtype=np.int32)
    for block in grid_indices(grid.counts):
        painted[grid.block_box(block).slices_zyx()] += 1
    assert (painted == 1).all()


@settings(max_examples=150, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 60)] * 3), chunk=triples, per_block=triples)
def test_every_chunk_has_exactly_one_owner(shape, chunk, per_block):
    grid = BlockGrid(ChunkGrid(shape, chunk), per_block)
    owned = [c for block in grid_indices(grid.counts) for c in grid.chunks_of(block)]
    assert len(owned) == len(set(owned))
    assert set(owned) == set(grid_indices(grid.chunks.counts))
    for block in grid_indices(grid.counts):  # a block's chunks lie inside the block
        box = grid.block_box(block)
        for c in grid.chunks_of(block):
            assert grid.chunks.chunk_box(c).intersect(box) == grid.chunks.chunk_box(c)


tile_strategy = st.lists(
    st.tuples(st.tuples(*[st.floats(-30, 60, allow_nan=False)] * 3), st.tuples(*[st.integers(1, 30)] * 3)),
    min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(tiles=tile_strategy, chunk=triples, per_block=triples, per_task=st.integers(0, 40))
def test_every_tile_block_overlap_is_found(tiles, chunk, per_block, per_task):
    tileset = TileSet(tuple(Tile(i, f"t{i}.tif", pos, size) for i, (pos, size) in enumerate(tiles)))
    bounds = tileset.bounds
    output = single_level_output(bounds.shape, chunk, per_block, bounds.start)
    grid = output.block_grid(0)
    # the brute-force reference is blocks x tiles in Python: a grid of ~10^5 blocks took
    # minutes per example and says nothing a grid of thousands does not
    assume(int(np.prod(grid.counts)) <= 4096)
    listed = block_tasks(output, (Stage(0, 1),), tileset, per_task)
    tasks = {t.index: set(t.tiles) for t in listed}
    assert len(tasks) == len(listed)  # no block is in two partitions
    boxes = [(t.index, t.box.relative_to(bounds.start)) for t in tileset]
    for block in grid_indices(grid.counts):  # brute force: every block × every tile
        box = grid.block_box(block)
        expected = {i for i, tile_box in boxes if not tile_box.intersect(box).is_empty()}
        assert tasks.get(block, set()) == expected


def test_blocks_no_tile_touches_are_not_scheduled():
    # two tiles far apart along x: the blocks between them hold nothing
    tiles = TileSet((Tile(0, "a", (0, 0, 0), (10, 10, 10)), Tile(1, "b", (90, 0, 0), (10, 10, 10))))
    output = single_level_output(tiles.bounds.shape, (10, 10, 10), (1, 1, 1))
    assert sorted(t.index for t in block_tasks(output, (Stage(0, 1),), tiles)) == [(0, 0, 0), (9, 0, 0)]


def test_box_basics():
    a, b = Box((0, 0, 0), (4, 5, 6)), Box((2, 3, 4), (8, 8, 8))
    assert a.intersect(b) == Box((2, 3, 4), (4, 5, 6))
    assert a.union(b) == Box((0, 0, 0), (8, 8, 8))
    assert a.slices_zyx() == (slice(0, 6), slice(0, 5), slice(0, 4))
    assert Box((0, 0, 0), (1, 0, 1)).is_empty() and a.size == 120


def test_voxel_counts_are_exact_past_two_to_the_63():
    """Trial AE: views 1e11 world units apart; np.prod of the output's shape wrapped to
    -8 055 634 665 954 909 182, and the run's summary left the span out."""
    shape = (851095015, 1129441209, 30)
    assert voxel_count(np.array(shape)) == 851095015 * 1129441209 * 30 > 2**63
    assert Box.from_shape((0, 0, 0), shape).size == voxel_count(shape)


def test_memory_check_names_the_block_and_the_limit():
    tiles = TileSet((Tile(0, "a", (0, 0, 0), (1024, 1024, 256)),))
    output = single_level_output((1024, 1024, 256), (256, 256, 128), (4, 4, 2))
    stages = (Stage(0, 1),)
    tasks = plan_tasks(output, stages, tiles)
    plan = ExportPlan(output, ((tiles,),), stages, tasks, "linear",
                      task_memory_bytes(output, tiles, stages))
    assert plan.task_memory > 2**30 * 4  # 256 Mi voxels × 18 bytes
    with pytest.raises(PlanError, match=r"block \[0, 0, 0\] \(1024 x 1024 x 256 voxels\).*limits.task_memory"):
        check_memory(plan, 2**30)
    check_memory(plan, 2**40)


def test_an_n5_chunk_larger_than_the_volume_costs_what_the_volume_costs():
    """N5 cuts edge chunks to the array, and a block is the voxels it holds: chunks of
    4096³ over a 250 × 250 × 39 volume need what chunks the volume's size need (the
    estimate was 11 TB, from the chunk's nominal size)."""
    tiles = TileSet((Tile(0, "a", (0, 0, 0), (250, 250, 39)),))
    stages = (Stage(0, 1),)
    exact = task_memory_bytes(single_level_output((250, 250, 39), (250, 250, 39), (2, 2, 2)), tiles, stages)
    huge = task_memory_bytes(single_level_output((250, 250, 39), (4096, 4096, 4096), (2, 2, 2)), tiles, stages)
    assert huge == exact < 2**30


def test_a_small_blocks_plan_counts_its_python_worker(tmp_path, small_acquisition):
    """Trial AL: blocks of 32^3 voxels were planned at 0.81 MiB a task, where each Python
    worker held 105-157 MiB of its own (interpreter, libraries, buffers): a container sized
    by the plan was short by that per core. The worker is a term of its own."""
    from pipelines.config import load_job
    from pipelines.plan import make_plan
    from pipelines.plan.memory import WORKER_BYTES, task_memory
    from tests.conftest import write_job
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    plan = make_plan(load_job(job, ["output.chunks=[32,32,32]", "output.block=[1,1,1]",
                                    "limits.tile_cache=0"]))
    terms = task_memory(plan.output, plan.tiles[0][0], plan.stages)
    assert terms.worker == WORKER_BYTES >= 150 << 20
    assert plan.task_memory == terms.peak and plan.task_memory - WORKER_BYTES < 4 << 20


@pytest.mark.parametrize("voxel_size", ["[0.02,0.02,5000]", "[1e-3,1e-3,1e3]", "1e4"])
def test_extreme_voxel_sizes_the_readme_allows_are_planned(tmp_path, small_acquisition, voxel_size):
    """Review RV11: judged singular by their condition number, per-axis scales the README
    allows (1e-6 to 1e6 per axis) ended the dry run and the run in a traceback."""
    from pipelines.config import load_job
    from pipelines.plan import make_plan
    from tests.conftest import write_job
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    plan = make_plan(load_job(job, [f"fusion.voxel_size={voxel_size}"]))
    assert plan.task_memory > 0 and all(n >= 1 for n in plan.array.shape)


def test_a_rotated_view_at_an_extreme_voxel_size_is_planned(tmp_path, small_acquisition):
    """Review RV12: the output grid's voxel sizes scale a view's world side, so a rotated
    view at [1e-4, 1, 1e3] looked flat to the input rule and planning ended in a
    traceback; the grid's affine is only asked whether it inverts."""
    import json

    from pipelines.config import load_job
    from pipelines.plan import make_plan
    from tests.conftest import write_job
    tiles = small_acquisition["paths"]["tiles_json"]
    doc = json.loads(Path(tiles).read_text())
    c, s = np.cos(0.7), np.sin(0.7)
    for t in doc:
        x, y, z = t["position"]
        t["transform"] = [[c, 0, s, x], [0, 1, 0, y], [-s, 0, c, z]]
    rotated = tmp_path / "rotated.json"
    rotated.write_text(json.dumps(doc))
    job = write_job(tmp_path / "job.toml", str(rotated), str(tmp_path / "out"))
    plan = make_plan(load_job(job, ["fusion.voxel_size=[1e-4,1,1e3]"]), check_files=False)
    assert plan.array.shape[0] > 1000 and plan.task_memory > 0


@pytest.mark.parametrize("dtype, refused", [("uint8", True), ("int16", True), ("int8", True),
                                            ("uint16", False), ("uint32", False), ("int32", False),
                                            ("float32", False)])
def test_labels_are_refused_a_type_that_cannot_hold_the_tiles(tmp_path, small_acquisition, dtype, refused):
    """Trial AR: uint16 labels exported to uint8 under mode merged every id from 255 up,
    exit 0 (a type too narrow clips). Under mean (intensities) clipping is documented."""
    from pipelines.config import load_job
    from pipelines.errors import ConfigError
    from pipelines.plan import make_plan
    from tests.conftest import write_job
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    labels = ["output.downsample=mode", "fusion.blending=max", f"output.dtype={dtype}"]
    if refused:
        with pytest.raises(ConfigError, match=f"output.dtype: '{dtype}' cannot hold every uint16 value"):
            make_plan(load_job(job, labels))
    else:
        assert make_plan(load_job(job, labels)).output.base.dtype == dtype
    assert make_plan(load_job(job, [f"output.dtype={dtype}"])).output.base.dtype == dtype


def test_float_labels_need_a_type_that_holds_their_whole_numbers():
    """Trial AU: float32 label tiles (ids to 2000) into uint8 merged every id from 255 up,
    exit 0: float32 holds whole numbers exactly to ±2^24, which int32 holds."""
    from pipelines.plan.output import _holds
    f32 = np.dtype("float32")
    assert [t for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
            if _holds(np.dtype(t), f32)] == ["int32", "float32", "float64"]
    assert _holds(np.dtype("float64"), np.dtype("float64")) and not _holds(np.dtype("float32"), np.dtype("float64"))
    assert _holds(np.dtype("int16"), np.dtype("int8")) and not _holds(np.dtype("uint16"), np.dtype("int8"))
