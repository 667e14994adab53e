"""Fuse one region at the stage positions and at the registered ones, side by side.

    python scripts/before_after.py TILES.json TILES-final.json OUT.png [--size 384]

Draws the maximum-intensity projection along z of a `size` × `size` region centred where
four tiles meet (the worst place for seams), fused with linear blending once from each
tile JSON. Used for the README's before/after picture of the demo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.fusion import fuse                  # noqa: E402
from pipelines.geometry import Box                 # noqa: E402
from pipelines.report.pictures import projections_png     # noqa: E402
from pipelines.tiles import read_tile_json         # noqa: E402


def corner_region(tiles, size: int) -> Box:
    """A size × size box (all z) centred on the far x-y corner of the first tile, which
    its neighbours in x, y and the diagonal overlap."""
    first = min(tiles, key=lambda t: t.index)
    cx, cy = first.box.stop[0], first.box.stop[1]
    bounds = tiles.bounds
    return Box((cx - size // 2, cy - size // 2, bounds.start[2]),
               (cx + size // 2, cy + size // 2, bounds.stop[2]))


def projection(tiles, region: Box) -> np.ndarray:
    touching = [t for t in tiles if not t.box.intersect(region).is_empty()]
    fused = fuse(region.relative_to(region.start), touching, region.start, "linear", np.float32)
    return fused.max(axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage")
    parser.add_argument("registered")
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args()
    stage, registered = read_tile_json(args.stage), read_tile_json(args.registered)
    region = corner_region(stage, args.size)
    images = [("stage positions", projection(stage, region), 1.0),
              ("after stitching", projection(registered, region), 1.0)]
    Path(args.out).write_bytes(projections_png(
        images, title=f"max over z of x {region.start[0]}–{region.stop[0]}, "
                      f"y {region.start[1]}–{region.stop[1]}, where four tiles meet"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
