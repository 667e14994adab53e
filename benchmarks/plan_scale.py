"""Planning a petabyte on paper: `jobs/export.py JOB --dry-run` on a 100 000-tile job.

    python benchmarks/plan_scale.py [--grid 50x50x40] [--tile 2048x2048x2048]

Writes a tile JSON (no tile files: a dry run never opens them) and a job file under
data/bench/plan-scale/, runs the dry run as a user would, in its own process, and reports
its wall time and the driver's peak memory (from the process's rusage) as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_job(folder: Path, grid, tile, overlap=0.1) -> Path:
    """A tile JSON of grid[0]*grid[1]*grid[2] tiles (x fastest) and a job exporting it."""
    folder.mkdir(parents=True, exist_ok=True)
    step = [round(t * (1 - overlap)) for t in tile]
    entries = []
    for z in range(grid[2]):
        for y in range(grid[1]):
            for x in range(grid[0]):
                entries.append({"index": len(entries), "file": f"tiles/tile-{len(entries):06d}.tif",
                                "position": [x * step[0], y * step[1], z * step[2]],
                                "size": list(tile), "pixelResolution": [0.4, 0.4, 0.4],
                                "type": "GRAY16"})
    (folder / "tiles.json").write_text(json.dumps(entries))
    job = folder / "job.toml"
    job.write_text('[input]\ntiles = "tiles.json"\n[output]\nuri = "out/volume.zarr"\n'
                   'format = "zarr3"\nchunks = [128, 128, 128]\nshard = [4, 4, 4]\nlevels = "auto"\n'
                   'codec = { name = "zstd", level = 1 }\n[limits]\ntask_memory = "16GiB"\n')
    return job


def triple(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=triple, default=(50, 50, 40))
    parser.add_argument("--tile", type=triple, default=(2048, 2048, 2048))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plan_scale.json"))
    args = parser.parse_args()
    job = write_job(ROOT / "data" / "bench" / "plan-scale", args.grid, args.tile)
    began = time.perf_counter()
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "export.py"), str(job), "--dry-run"],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(run.stdout + run.stderr, end="")
    if run.returncode:
        return run.returncode
    result = {"grid": args.grid, "tile": args.tile, "tiles": args.grid[0] * args.grid[1] * args.grid[2],
              "wall_seconds": round(seconds, 2), "peak_rss_bytes": peak, "output": run.stdout.splitlines()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\ndry run of {result['tiles']:,} tiles: {seconds:.1f} s wall (python start-up included), "
          f"peak memory {peak / 2**30:.2f} GiB (goal: < 60 s and < 2 GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
