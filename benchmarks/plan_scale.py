"""Planning a petabyte on paper: `jobs/export.py JOB --dry-run` on a 100 000-tile job, and
listing every task a real run of it would hand its executor.

    python benchmarks/plan_scale.py [--grid 50x50x40] [--tile 2048x2048x2048]

Writes a tile JSON (no tile files: a dry run never opens them) and a job file under
data/bench/plan-scale/, runs the dry run as a user would, in its own process, then, in
another process, builds the plan's task description and lists every partition as the
driver does when it runs them (`StageTasks.partitions`, under `quiet_collector`), and
reports wall times and peak memory (from the processes' rusage) as JSON.
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


def enumerate_tasks(job: Path) -> dict:
    """In this process: read the tile JSON, describe every pass's tasks, then list them all."""
    from pipelines.config import load_job
    from pipelines.plan import plan_output, plan_stages, plan_tasks, read_tiles
    from pipelines.plan.tasks import quiet_collector
    began = time.perf_counter()
    config = load_job(job)
    first = read_tiles(config, None)[0][0]
    output = plan_output(config, first, 1, 1)
    stages = plan_stages(output)
    read = time.perf_counter()
    tasks = plan_tasks(output, stages, first, config.blocks_per_task, config.task_slots)
    described = time.perf_counter()
    listed = blocks = 0
    with quiet_collector():
        for stage in tasks.stages:
            for t in range(tasks.timepoints):
                for part in stage.partitions(t):
                    listed += 1
                    blocks += part.blocks
    assert listed == tasks.partitions and blocks == tasks.blocks
    done = time.perf_counter()
    return {"partitions": listed, "blocks": blocks, "read_seconds": round(read - began, 2),
            "describe_seconds": round(described - read, 2), "list_seconds": round(done - described, 2),
            "seconds": round(done - began, 2),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def triple(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=triple, default=(50, 50, 40))
    parser.add_argument("--tile", type=triple, default=(2048, 2048, 2048))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plan_scale.json"))
    parser.add_argument("--enumerate", metavar="JOB", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.enumerate:
        print(json.dumps(enumerate_tasks(Path(args.enumerate))))
        return 0
    job = write_job(ROOT / "data" / "bench" / "plan-scale", args.grid, args.tile)
    began = time.perf_counter()
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "export.py"), str(job), "--dry-run"],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(run.stdout + run.stderr, end="")
    if run.returncode:
        return run.returncode
    listing = subprocess.run([sys.executable, __file__, "--enumerate", str(job)], cwd=ROOT,
                             capture_output=True, text=True)
    if listing.returncode:
        print(listing.stderr, end="")
        return listing.returncode
    tasks = json.loads(listing.stdout)
    result = {"grid": args.grid, "tile": args.tile, "tiles": args.grid[0] * args.grid[1] * args.grid[2],
              "wall_seconds": round(seconds, 2), "peak_rss_bytes": peak, "output": run.stdout.splitlines(),
              "listing_tasks": tasks}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\ndry run of {result['tiles']:,} tiles: {seconds:.1f} s wall (python start-up included), "
          f"peak memory {peak / 2**30:.2f} GiB (goal: < 60 s and < 2 GiB)")
    print(f"listing all {tasks['partitions']:,} tasks ({tasks['blocks']:,} blocks): {tasks['seconds']:.1f} s "
          f"(tile JSON {tasks['read_seconds']} s, description {tasks['describe_seconds']} s, listing "
          f"{tasks['list_seconds']} s), peak memory {tasks['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"(goal: < 60 s and < 2 GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
