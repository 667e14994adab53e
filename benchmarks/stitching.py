"""Stitching accuracy and speed on synthetic acquisitions with known jitter.

    python benchmarks/stitching.py [--out benchmarks/results/stitching.json]

For each case it generates the acquisition (once, under data/bench/), runs the stitch job
on Spark local[*], and compares the refined positions with the true ones after removing
the one global translation no registration can recover. Prints a table (Markdown) and
writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_session  # noqa: E402
from pipelines.config import build_config  # noqa: E402
from pipelines.testing.synthetic import make_acquisition  # noqa: E402
from pipelines.tiles import read_tile_json  # noqa: E402

# name: (acquisition parameters, [stitching] keys)
CASES = {
    "demo: 3x3x2 tiles 512x512x128, 10% overlap, jitter ±20": (
        dict(grid=(3, 3, 2), tile=(512, 512, 128), overlap=0.1, jitter=20, seed=0),
        dict(search=40, downsample=[4, 4, 2])),
    "test: 3x3x2 tiles 128x128x48, 15% overlap, jitter ±8, density 20": (
        dict(grid=(3, 3, 2), tile=(128, 128, 48), overlap=0.15, jitter=8, seed=0, density=20),
        dict(search=16, downsample=[2, 2, 1])),
}


def errors(found: dict, truth_json: str) -> np.ndarray:
    truth = read_tile_json(truth_json)
    true = np.array([t.position for t in truth])
    error = np.array([found[t.index] for t in truth]) - true
    return np.linalg.norm(error - error.mean(axis=0), axis=1)


def run_case(name: str, acquisition: dict, keys: dict, spark) -> dict:
    from pipelines.registering import stitch
    from pipelines.spark import SparkExecutor
    folder = ROOT / "data" / "bench" / name.split(":")[0]
    if not (folder / "tiles-true.json").exists() or \
            json.loads((folder / "acquisition.json").read_text()).get("jitter") != acquisition["jitter"]:
        make_acquisition(folder, truth=False, **acquisition)
    config = build_config({"input": {"tiles": str(folder / "tiles.json")},
                           "output": {"uri": str(folder / "unused")},
                           "stitching": {"enabled": True, "force": True, **keys}})
    began = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        result = stitch(config, SparkExecutor(spark=spark), stream=quiet)
    seconds = time.perf_counter() - began
    doc = result.outcome.report
    stage = {t.index: t.position for t in read_tile_json(str(folder / "tiles.json"))}
    before, after = errors(stage, str(folder / "tiles-true.json")), errors(
        result.outcome.solution.positions, str(folder / "tiles-true.json"))
    return {"case": name, "tiles": doc["tiles"], "pairs": doc["pairs"],
            "stage_error_median": round(float(np.median(before)), 3),
            "stage_error_max": round(float(before.max()), 3),
            "error_median": round(float(np.median(after)), 3),
            "error_max": round(float(after.max()), 3),
            "seconds_pairs": doc["seconds"]["pairs"], "seconds_per_pair": doc["seconds"]["per_pair"],
            "seconds_total": round(seconds, 2), "unlinked": doc["solve"]["unlinked_tiles"]}


def table(rows: list[dict]) -> str:
    lines = ["| case | pairs measured / kept | stage error median / max (voxels) | "
             "after stitching median / max (voxels) | time per pair | stitch total |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['pairs']['measured']} / {r['pairs']['kept']} | "
                     f"{r['stage_error_median']} / {r['stage_error_max']} | "
                     f"**{r['error_median']} / {r['error_max']}** | {r['seconds_per_pair']:.2f} s | "
                     f"{r['seconds_total']:.1f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stitching.json"))
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    spark = bench_session(args.master, "stitching")
    try:
        rows = [run_case(name, *case, spark) for name, case in CASES.items()]
    finally:
        spark.stop()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "master": args.master}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=1) + "\n")
    print(table(rows))
    print(f"\nmachine: {machine}\nwritten: {args.out}")
    goals = all(r["error_median"] <= 0.5 and r["error_max"] <= 1.5 for r in rows)
    print("accuracy goal (median <= 0.5, max <= 1.5 voxels): " + ("met" if goals else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
