"""Fuse one region at the stage positions and at the registered ones, side by side.

    python scripts/before_after.py TILES.json TILES-final.json OUT.png [--size 384]

Draws the maximum-intensity projection along z of a `size` × `size` region centred where
four tiles meet (the worst place for seams), fused with linear blending once from each
tile JSON (`pipelines.report.seams`; the run report draws the same picture whenever
stitching ran). Used for the README's before/after picture of the demo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.report.seams import SIZE, seam_png  # noqa: E402
from pipelines.tiles import read_tile_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", help="tile JSON with the stage positions (tiles.json)")
    parser.add_argument("registered", help="tile JSON with the registered positions (tiles-final.json)")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--size", type=int, default=SIZE,
                        help="side of the square region drawn, in voxels (default: %(default)s)")
    args = parser.parse_args()
    stage, registered = read_tile_json(args.stage), read_tile_json(args.registered)
    Path(args.out).write_bytes(seam_png(stage, registered, size=args.size))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
