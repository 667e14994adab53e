"""Affine fusion against a phantom defined in world space: every loader, every kind of
acquisition (calibrated grid, two angles 30° apart, an oblique scan), `average` and
`linear` blending, judged where some view covers a voxel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.config import BLENDINGS, build_config
from pipelines.geometry import Box
from pipelines.pixels.fusion import fuse
from pipelines.plan import make_plan
from pipelines.tiles import Tile, read_region
from tests.bigstitcher_project import covered, phantom, scenario, write_project
from tests.pipeline_helpers import fused_channel

LOADERS = ("tiff", "n5", "hdf5", "zarr")


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("projects")
    return {(name, loader): write_project(root / f"{name}-{loader}", scenario(name), loader)
            for name in ("grid", "angles", "oblique") for loader in LOADERS}


def plan_of(xml: Path, **fusion):
    return make_plan(build_config({"input": {"tiles": str(xml)}, "output": {"uri": str(xml.parent / "out")},
                                   "fusion": {"interpolation": "linear", **fusion}}))


def relative_rms(plan, views, fused: np.ndarray) -> tuple[float, np.ndarray]:
    """RMS of fused − phantom over covered voxels, relative to the phantom's RMS there;
    output voxel i lies at world (offset + i) · voxel_size."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in fused.shape], indexing="ij")
    world = (np.stack([x, y, z], -1) + np.array(plan.offset)) * np.array(plan_voxel(plan))
    where = covered(world, views)
    reference = phantom(world)
    error = np.sqrt(np.mean((fused[where].astype(float) - reference[where]) ** 2))
    return error / np.sqrt(np.mean(reference[where] ** 2)), where


def plan_voxel(plan) -> tuple[float, ...]:
    """World units per output voxel: the output's µm per voxel over µm per world unit."""
    from tests.bigstitcher_project import VOXEL_X
    return tuple(r / VOXEL_X for r in plan.output.base.resolution)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("name", ["grid", "angles", "oblique"])
@pytest.mark.parametrize("blending", ["average", "linear"])
def test_affine_views_fuse_to_the_phantom(projects, name, loader, blending):
    plan = plan_of(projects[(name, loader)], blending=blending)
    fused = fused_channel(plan)
    error, where = relative_rms(plan, scenario(name), fused)
    assert error < 0.03, f"{name}/{loader}/{blending}: relative RMS {error:.4f}"
    assert where.mean() > 0.5                       # most of the output is covered
    assert not fused[~where].any()                  # nothing where no view reaches


def test_every_blending_rule_stays_close_and_nearest_sampling_too(projects):
    xml = projects[("angles", "tiff")]
    for blending in (b for b in BLENDINGS if b != "linear"):   # linear: every other test
        plan = plan_of(xml, blending=blending)
        assert relative_rms(plan, scenario("angles"), fused_channel(plan))[0] < 0.03, blending
    plan = plan_of(xml, blending="linear", interpolation="nearest")
    assert relative_rms(plan, scenario("angles"), fused_channel(plan))[0] < 0.05


def test_voxel_size_and_bounding_box_choose_the_output_grid(projects):
    """A coarser grid (2 world units per voxel in x and y) over a part of the world: the
    output's size and offset follow, and its voxels still sample the phantom."""
    xml = projects[("angles", "n5")]
    plan = plan_of(xml, blending="linear", voxel_size=[2, 2, 1],
                   bounding_box={"min": [10, 12, 8], "max": [40, 40, 30.5]})
    assert plan.offset == (5, 6, 8)
    assert plan.output.shapes[0] == (16, 15, 23)   # centres 10..40 step 2, 12..40, 8..30
    assert plan_voxel(plan) == pytest.approx((2, 2, 1))
    error, where = relative_rms(plan, scenario("angles"), fused_channel(plan))
    assert error < 0.03 and where.all()


def test_a_block_fuses_to_the_same_bytes_every_time(projects):
    """Chunks are a pure function of the inputs: fusing a block again (a retry) gives the
    same bytes. Another cut into blocks may round a voxel differently (the view region a
    block reads shifts its coordinates by a few ulps), never by more than one step."""
    plan = plan_of(projects[("angles", "tiff")], blending="linear")
    whole = fused_channel(plan)
    tiles = plan.tiles[0][0]
    shape = plan.output.shapes[0]
    for start in ((0, 0, 0), (17, 5, 9), (40, 33, 30)):
        box = Box(start, tuple(min(s + 19, n) for s, n in zip(start, shape)))
        first, again = (fuse(box, tiles, plan.offset, "linear", whole.dtype, read=read_region,
                             interpolation="linear") for _ in range(2))
        np.testing.assert_array_equal(first, again)
        difference = np.abs(first.astype(int) - whole[box.slices_zyx()])
        assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


def test_a_whole_voxel_translation_is_the_translation_path(tmp_path):
    """A view placed by a pure translation (identity linear part) becomes a position: the
    copy fast path and its bytes, under both interpolations."""
    from pipelines.tiles.model import placement
    position, transform = placement((1.0, 0, 0, 5.0, 0, 1.0, 0, -3.0, 0, 0, 1.0, 2.0))
    assert position == (5.0, -3.0, 2.0) and transform is None
    stack = np.arange(6 * 7 * 8, dtype=np.uint16).reshape(6, 7, 8)
    import tifffile
    tifffile.imwrite(tmp_path / "a.tif", stack)
    placed = Tile(0, str(tmp_path / "a.tif"), (5.0, -3.0, 2.0), (8, 7, 6))
    # the same tile as an affine that is a translation in disguise (a 1e-300 shear) must
    # still land on the same voxels with the same values
    sheared = Tile(0, placed.path, placed.position, placed.size,
                   transform=(1.0, 0, 1e-300, 5.0, 0, 1.0, 0, -3.0, 0, 0, 1.0, 2.0))
    box = Box((5, -3, 2), (13, 4, 8))
    for tile in (placed, sheared):
        out = fuse(box.relative_to((0, 0, 0)), [tile], (0, 0, 0), "linear", np.uint16,
                   interpolation="linear")
        np.testing.assert_array_equal(out, stack)


def test_memory_counts_what_a_rotated_view_makes_a_block_read(projects):
    """A block of a view rotated 30° reads a region of the view larger than the block (its
    bounding box in the view's pixels); the plan's fusing term counts it and the sampling
    temporaries, and a block fused for real stays within the term."""
    import tracemalloc
    from dataclasses import replace

    from pipelines.plan.memory import AFFINE_BYTES_PER_VOXEL, task_memory
    xml = projects[("angles", "tiff")]
    plan = make_plan(build_config({"input": {"tiles": str(xml)},
                                   "output": {"uri": str(xml.parent / "out"), "chunks": [16, 16, 8]},
                                   "fusion": {"interpolation": "linear"}}))
    tiles = plan.tiles[0][0]
    rotated = task_memory(plan.output, tiles, plan.stages)
    placed = task_memory(plan.output, type(tiles)(tuple(replace(t, transform=None) for t in tiles)), plan.stages)
    block = int(np.prod(plan.output.block_grid(0).block_shape))
    # 32 x 32 x 16 voxels span about 38 x 35 x 32 pixels of the rotated view
    assert rotated.fusing - placed.fusing > block * (AFFINE_BYTES_PER_VOXEL + 2)
    box = plan.output.block_grid(0).block_box((1, 1, 1))
    fuse(box, tiles, plan.offset, "linear", np.uint16, read=read_region, interpolation="linear")  # warm: the kernel loads once
    tracemalloc.start()
    fuse(box, tiles, plan.offset, "linear", np.uint16, read=read_region, interpolation="linear")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= rotated.fusing, (peak, rotated.fusing)


@pytest.mark.parametrize("affine", [
    (1, 0, 0, 3.3, 0, 1, 0, -2.2, 0, 0, 2, 1.7),          # trial Z: a z calibration, moved
    (2.5, 0, 0, 0.7, 0, 1, 0, 0.4, 0, 0, 1, -0.6),        # magnified in x
    (0.9848, -0.1736, 0, 4.1, 0.1736, 0.9848, 0, -1.3, 0, 0, 1.5, 0.2),   # 10° about z
    # ties, where pixel edges land on voxel centres (review of cd770b4): scaled by whole
    # voxels (fusion.voxel_size 0.5), moved by x.5, flipped, turned by 90° and 180°
    (2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0),
    (1, 0, 0, 3.5, 0, 1, 0, -2.5, 0, 0, 2, 1.0),
    (-1, 0, 0, 40.5, 0, 1, 0, 0, 0, 0, 1, 0),
    (-2, 0, 0, 0, 0, -2, 0, 0, 0, 0, -2, 0),
    (0, -2, 0, 0, 2, 0, 0, 0, 0, 0, 2, 0),
    (-1, 0, 0, 0.5, 0, -1, 0, 0.5, 0, 0, 1, 0),
    # ties inside the view, which float noise in u once decided (second review): a 90°
    # turn as BigStitcher writes it (cos 6.1e-17) moved by x.5, and fusion.voxel_size 0.3
    (6.123233995736766e-17, -1, 0, 10.5, 1, 6.123233995736766e-17, 0, 0.5, 0, 0, 1, 0),
    (1 / 0.3, 0, 0, 0, 0, 1 / 0.3, 0, 0, 0, 0, 1 / 0.3, 0),
])
@pytest.mark.parametrize("blending", ["linear", "first"])
def test_nearest_sampling_reaches_each_pixel_to_its_own_edge(tmp_path, affine, blending):
    """Trial Z: under nearest interpolation an affine view lost its first pixel column,
    row and plane (a view moved 3.3 voxels: 29 of its 30 columns), as its footprint ended
    at its outer pixel centres; the translation path keeps them all. Judged against a
    brute-force reference: output voxel X takes pixel ceil(u - 0.5) where u = A⁻¹ · X lies
    in (-0.5, n - 0.5] per axis (rounded half down, as a placed tile's position is rounded
    half up), and 0 elsewhere — also at ties, flipped, turned, and under linear blending,
    whose weight once fell to 0 on the pixel edge (review of cd770b4: a layer of zeros)."""
    import tifffile

    from pipelines.tiles.model import TileSet
    from pipelines.transforms import apply, inverse
    size = (30, 28, 8)   # x, y, z
    rng = np.random.default_rng(7)
    stack = rng.integers(1, 60000, size=size[::-1], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "view.tif", stack)
    tile = Tile(0, str(tmp_path / "view.tif"), tuple(affine[3::4]), size, transform=tuple(map(float, affine)))
    [placed] = TileSet((tile,)).on_grid((1.0, 1.0, 1.0), "nearest").tiles
    region = Box(tuple(s - 3 for s in placed.box.start), tuple(s + 3 for s in placed.box.stop))
    fused = fuse(Box((0, 0, 0), region.shape), [placed], region.start, blending, np.uint16,
                 read=read_region, interpolation="nearest")
    z, y, x = np.meshgrid(*[np.arange(a, b) for a, b in zip(region.start[::-1], region.stop[::-1])],
                          indexing="ij")
    u = apply(inverse(tile.transform), np.stack([x, y, z], -1).reshape(-1, 3))
    u = np.round(u, 9)   # ties exactly on the pixel edges, as the affines mean them
    inside = np.all((u > -0.5) & (u <= np.array(size) - 0.5), axis=1)
    pixel = np.ceil(u[inside] - 0.5).astype(int)
    reference = np.zeros(len(u), dtype=np.uint16)
    reference[inside] = stack[pixel[:, 2], pixel[:, 1], pixel[:, 0]]
    np.testing.assert_array_equal(fused.reshape(-1), reference)
    assert len(np.unique(pixel[:, 0])) == size[0]   # every column of the view is in the output
    # cut into blocks at odd places, the same bytes (u is computed from each block's origin)
    cut = [0, 7, 20, region.shape[0]]
    pieces = [fuse(Box((a, 0, 0), (b, *region.shape[1:])), [placed], region.start, blending,
                   np.uint16, read=read_region, interpolation="nearest") for a, b in zip(cut, cut[1:])]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=2), fused)
    # and the footprint is the box of what it reaches: no empty face
    reached = np.stack([x, y, z], -1).reshape(-1, 3)[inside]
    assert placed.box == Box(tuple(reached.min(axis=0)), tuple(reached.max(axis=0) + 1))


def test_nearest_places_a_view_moved_by_half_a_voxel_as_a_placed_tile(tmp_path):
    """At x.5 positions the affine path put a view one voxel lower than the translation
    path (review of cd770b4: round half up of u against the position's round half up):
    the same voxels, the same values, now."""
    import tifffile

    from pipelines.tiles.model import TileSet
    stack = np.arange(8 * 7 * 6, dtype=np.uint16).reshape(6, 7, 8) + 1
    tifffile.imwrite(tmp_path / "a.tif", stack)
    for position in ((3.5, -2.5, 0.5), (0.5, 1.5, -0.5), (2.3, 4.7, 1.5)):
        placed = Tile(0, str(tmp_path / "a.tif"), position, (8, 7, 6))
        # a translation in disguise (a 1e-300 shear) keeps the affine path
        affine = Tile(0, placed.path, position, placed.size,
                      transform=(1.0, 0, 1e-300, position[0], 0, 1.0, 0, position[1], 0, 0, 1.0, position[2]))
        [affine] = TileSet((affine,)).on_grid((1.0, 1.0, 1.0), "nearest").tiles
        assert affine.box == placed.box, position
        outs = [fuse(Box((0, 0, 0), placed.box.shape), [t], placed.box.start, "linear", np.uint16,
                     read=read_region, interpolation="nearest") for t in (placed, affine)]
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], stack)
