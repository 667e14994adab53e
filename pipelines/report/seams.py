"""The before/after seam picture: where four tiles meet, fused once at the stage positions
and once at the registered ones, maximum over z, side by side.

Drawn into the run report whenever stitching ran (`stitching-before-after.png`), and by
`scripts/before_after.py` for any two tile JSONs. The driver reads and fuses one bounded
region (at most `VOXELS` voxels per fusion), as the projections are read back.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from pipelines.geometry import Box
from pipelines.pixels.fusion import fuse
from pipelines.tiles import TileSet, read_region

SIZE = 384            # voxels across the region, x and y
VOXELS = 2**25        # at most this many voxels fused at once (128 MiB as float32)


def corner_region(tiles: TileSet, size: int = SIZE, voxels: int = VOXELS) -> Box:
    """A box centred on the far x-y corner of the lowest-index tile, which its neighbours
    in x, y and along the diagonal overlap: `size` voxels across, or the tile's own width
    and height if smaller (so the four quarters are four tiles); in z the whole
    acquisition, or a slab through that tile's middle when that would exceed `voxels`."""
    first = min(tiles, key=lambda t: t.index)
    sx, sy = min(size, first.size[0]), min(size, first.size[1])
    cx, cy = first.box.stop[0], first.box.stop[1]
    z0, z1 = tiles.bounds.start[2], tiles.bounds.stop[2]
    depth = max(1, min(z1 - z0, voxels // (sx * sy)))
    middle = (first.box.start[2] + first.box.stop[2]) // 2
    start = min(max(z0, middle - depth // 2), z1 - depth)
    return Box((cx - sx // 2, cy - sy // 2, start), (cx + sx // 2, cy + sy // 2, start + depth))


def projection(tiles: TileSet, region: Box, s3=None) -> np.ndarray:
    """The maximum along z of `region` fused with linear blending (y, x)."""
    touching = [t for t in tiles if not t.box.intersect(region).is_empty()]
    fused = fuse(region.relative_to(region.start), touching, region.start, "linear", np.float32,
                 read=partial(read_region, s3=s3))
    return fused.max(axis=0)


def seam_png(stage: TileSet, registered: TileSet, s3=None, size: int = SIZE) -> bytes:
    """Both projections of the corner region of `stage`, with axes in µm."""
    from pipelines.report.pictures import projections_png  # matplotlib only where drawn

    region = corner_region(stage, size)
    rx, ry, _ = min(stage, key=lambda t: t.index).pixel_resolution
    images = [(f"{name}: maximum over z", projection(tiles, region, s3), ry / rx, rx)
              for name, tiles in (("at the stage positions", stage),
                                  ("at the registered positions", registered))]
    x0, y0, z0 = region.start
    x1, y1, z1 = region.stop
    return projections_png(images, title=f"where four tiles meet: voxels x {x0}–{x1}, "
                                         f"y {y0}–{y1}, z {z0}–{z1} (seams double structures "
                                         f"before stitching)")
