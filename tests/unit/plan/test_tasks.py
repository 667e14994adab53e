"""Tasks as grid ranges: partitions hold every block once, in Morton order; later stages,
block counts and object counts equal brute-force answers computed block by block."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, compressor_for
from pipelines.geometry import Box, ceil_div, grid_indices
from pipelines.plan import OutputSpec, Stage, plan_stages, plan_tasks
from pipelines.plan.ranges import morton_keys, morton_order, partition_shape
from pipelines.plan.tasks import auto_blocks_per_task
from pipelines.tiles import Tile, TileSet
from tests.pipeline_helpers import owned_keys

tiles_strategy = st.lists(
    st.tuples(st.tuples(*[st.integers(0, 90)] * 3), st.tuples(*[st.integers(1, 40)] * 3)),
    min_size=1, max_size=8)


def pyramid_output(shape, chunk, block, factors, shard=None, fmt="n5", offset=(0, 0, 0)) -> OutputSpec:
    """An output whose levels halve along the axes `factors` say, as plan_output makes them
    (voxel 0 at stage position `offset`)."""
    spec = ArraySpec("", tuple(shape), tuple(chunk), "uint16",
                     compressor_for(CodecConfig("raw"), fmt), shard=shard, offset=tuple(offset))
    shapes, current = [tuple(shape)], tuple(shape)
    for f in factors:
        current = tuple(ceil_div(s, k) for s, k in zip(current, f))
        shapes.append(current)
    return OutputSpec("out", fmt, "n5-viewer" if fmt == "n5" else "ome", spec, tuple(block),
                      tuple(shapes), ((1, 1, 1), *map(tuple, factors)))


def tileset(tiles) -> TileSet:
    return TileSet(tuple(Tile(i, f"t{i}.tif", pos, size) for i, (pos, size) in enumerate(tiles)))


def voxels(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(box.start, box.stop))


def blocks_meeting(grid, mask: np.ndarray) -> set:
    """Every block of `grid` (one by one) whose voxels meet `mask` (indexed x, y, z)."""
    return {b for b in grid_indices(grid.counts) if mask[voxels(grid.block_box(b))].any()}


def brute_force_stage_blocks(output, stage, tiles) -> set:
    """Voxel by voxel: stage 0 holds the blocks whose voxels meet a tile's; a later stage the
    blocks holding a voxel whose level-0 footprint meets one of those stage-0 blocks."""
    grid0, origin = output.block_grid(0), tiles.bounds.start
    in_tiles = np.zeros(output.shapes[0], bool)
    for t in tiles:
        in_tiles[voxels(t.box.relative_to(origin))] = True
    touched = blocks_meeting(grid0, in_tiles)
    if stage.first == 0:
        return touched
    grid, scale = output.block_grid(stage.first), output.cumulative(stage.first)
    padded = [ceil_div(n, f) * f for n, f in zip(output.shapes[0], scale)]
    in_touched = np.zeros(padded, bool)
    for b in touched:
        in_touched[voxels(grid0.block_box(b))] = True
    # a level-k voxel v covers level-0 voxels [v·f, (v + 1)·f) on each axis
    (fx, fy, fz), (nx, ny, nz) = scale, (p // f for p, f in zip(padded, scale))
    footprint_meets = in_touched.reshape(nx, fx, ny, fy, nz, fz).any(axis=(1, 3, 5))
    return blocks_meeting(grid, footprint_meets)


@settings(max_examples=30, deadline=None)
@given(tiles=tiles_strategy, per_task=st.integers(1, 30), levels=st.integers(1, 3))
def test_partitions_hold_every_stage_block_once(tiles, per_task, levels):
    ts = tileset(tiles)
    output = pyramid_output(ts.bounds.shape, (4, 4, 4), (2, 1, 2), [(2, 2, 2)] * (levels - 1),
                            offset=ts.bounds.start)
    stages = plan_stages(output)
    planned = plan_tasks(output, stages, ts, per_task)
    for n, stage in enumerate(stages):
        described = planned.stages[n]
        listed = [b for part in described.partitions(0) for b in part.block_tasks()]
        indices = [b.index for b in listed]
        assert len(indices) == len(set(indices)) == described.blocks
        assert set(indices) == brute_force_stage_blocks(output, stage, ts)
        for part in described.partitions(0):
            assert len(part.block_tasks()) == part.blocks <= per_task
            assert all(described.partition_of(b.index) == part.index for b in part.block_tasks())


def interleaved(index) -> int:
    """Morton key by hand: bit k of x, y, z goes to bits 3k, 3k + 1, 3k + 2."""
    return sum(((v >> k) & 1) << (3 * k + axis) for k in range(63) for axis, v in enumerate(index))


def test_a_partition_runs_its_blocks_in_morton_order():
    ts = tileset([((0, 0, 0), (64, 64, 64))])
    output = pyramid_output((64, 64, 64), (4, 4, 4), (1, 1, 1), [])
    planned = plan_tasks(output, (Stage(0, 1),), ts, 64)
    assert planned.stages[0].shape == (4, 4, 4)
    part = next(planned.stages[0].partitions(0))
    order = [t.index for t in part.block_tasks()]
    start = np.array(part.start)
    assert order == sorted(order, key=lambda i: interleaved(tuple(np.array(i) - start)))
    assert order[:8] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0),
                         (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
    ids = [p.index for p in planned.stages[0].partitions(0)]
    assert [interleaved(i) for i in ids] == sorted(interleaved(i) for i in ids)


def test_morton_keys_match_the_bit_by_bit_definition():
    rng = np.random.default_rng(3)
    cells = rng.integers(0, 200, (100, 3))
    assert morton_keys(cells).tolist() == [interleaved(tuple(c)) for c in cells.tolist()]


@pytest.mark.parametrize("top", [200, 2**21, 2**40, 2**62])
def test_morton_order_sorts_indices_of_any_size_by_their_whole_keys(top):
    """Defect (trial H): grids of more than 2^21 cells a side (tiles far apart) failed with
    a traceback, "grid index too large for a Morton key"."""
    rng = np.random.default_rng(4)
    cells = np.concatenate([rng.integers(0, top, (300, 3)), rng.integers(0, 8, (50, 3)),
                            np.repeat(rng.integers(0, top, (5, 3)), 3, axis=0)])  # ties too
    keys = [interleaved(tuple(c)) for c in cells.tolist()]   # Python ints: no bit limit
    assert morton_order(cells).tolist() == sorted(range(len(cells)), key=lambda n: keys[n])


def test_tiles_a_billion_voxels_apart_are_planned_as_their_own_blocks():
    """Tiles 10^9 voxels apart along x make a grid of 2^21+ partitions a side; the plan
    holds only the partitions the tiles meet, each block once (README: positions within
    ±2^40 voxels)."""
    far = 10**9
    ts = tileset([((0, 0, 0), (64, 64, 24)), ((far, 0, 0), (64, 64, 24))])
    output = pyramid_output((far + 64, 64, 24), (64, 64, 24), (1, 1, 1), [])
    stage = plan_tasks(output, (Stage(0, 1),), ts, 1).stages[0]
    blocks = [t.index for p in stage.partitions(0) for t in p.block_tasks()]
    assert sorted(blocks) == [(0, 0, 0), (far // 64, 0, 0)]


@pytest.mark.parametrize("counts, per_task, shape", [
    ((10, 10, 10), 64, (4, 4, 4)), ((10, 10, 10), 1, (1, 1, 1)), ((10, 10, 10), 100, (4, 4, 4)),
    ((3, 100, 1), 64, (3, 16, 1)), ((1, 1, 1), 4096, (1, 1, 1)), ((100, 100, 2), 128, (8, 8, 2)),
])
def test_partition_shape(counts, per_task, shape):
    assert partition_shape(counts, per_task) == shape


def test_blocks_an_earlier_run_recorded_are_not_run_again():
    ts = tileset([((0, 0, 0), (32, 32, 32))])
    output = pyramid_output((32, 32, 32), (4, 4, 4), (1, 1, 1), [])
    described = plan_tasks(output, (Stage(0, 1),), ts, 8).stages[0]
    part = described.partition(0, 0)
    first_three = frozenset(t.index for t in part.block_tasks()[:3])
    again = described.partition(0, 0, done=first_three)
    assert [t.index for t in again.block_tasks()] == [t.index for t in part.block_tasks()[3:]]


@settings(max_examples=25, deadline=None)
@given(tiles=tiles_strategy, sharded=st.booleans(), levels=st.integers(1, 3))
def test_planned_objects_are_the_blocks_own_objects(tiles, sharded, levels):
    from pipelines.plan import ExportPlan
    ts = tileset(tiles)
    shard = (2, 1, 2) if sharded else None
    output = pyramid_output(ts.bounds.shape, (4, 4, 2), (2, 2, 2), [(2, 2, 2)] * (levels - 1),
                            shard=shard, fmt="zarr3" if sharded else "n5", offset=ts.bounds.start)
    stages = plan_stages(output)
    planned = plan_tasks(output, stages, ts)
    plan = ExportPlan(output, ((ts,),), stages, planned, "max", 0)
    keys = [k for task in planned.block_tasks() for k in owned_keys(plan, task)]
    assert len(keys) == len(set(keys))  # one owner per object
    assert sum(planned.objects) == len(keys)
    for task in planned.block_tasks():
        assert plan.object_count(task) == len(owned_keys(plan, task))


def test_automatic_partitions_are_seconds_of_work_and_leave_tasks_for_every_core():
    small = pyramid_output((64, 64, 64), (16, 16, 16), (1, 1, 1), [])   # 8 KiB blocks
    assert auto_blocks_per_task(small, 64) == 1           # too few blocks to share out
    assert auto_blocks_per_task(small, 10**6) == 3906     # 10^6 / MIN_TASKS, under the cap
    assert auto_blocks_per_task(small, 64, slots=2) == 8  # 4 tasks per slot
    assert auto_blocks_per_task(small, 10**6, slots=2) == 4096   # the cap
    big = pyramid_output((4096,) * 3, (128, 128, 128), (4, 4, 4), [])  # 256 MiB blocks
    assert auto_blocks_per_task(big, 10**6) == 1
    assert auto_blocks_per_task(pyramid_output((2048, 2048, 512), (128, 128, 128), (2, 2, 2), []),
                                128, slots=2) == 8   # the throughput benchmark: 16 tasks of 256 MiB
