"""A real export of over a million blocks and a million objects on this machine, killed and
resumed, then verified (`make bench-scale`).

    python benchmarks/scale_run.py [--tile 224x224x400] [--kill-at 0.4] [--master local[2]]

A synthetic 2 x 2 x 1 acquisition of uint8 tiles (under data/bench/scale/) is exported as
N5 with 4³ chunks and one chunk per block: about 1.1 million blocks, each one object. The
first run is killed (SIGKILL of the driver and its JVM) once `--kill-at` of the tasks have
recorded their blocks; the same job is then run again, resumes, commits; `jobs/verify.py`
checks every object. For the resumed run the script samples the driver process (the
Python that plans, hands out tasks and commits; not the JVM, not the executors' Python
workers) from /proc: its peak resident memory (VmHWM) and CPU time. Results go to
benchmarks/results/scale_run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "data" / "bench" / "scale"
CLOCK = os.sysconf("SC_CLK_TCK")


def acquisition(tile: tuple[int, int, int]) -> Path:
    """The tiles, generated once per tile size."""
    from pipelines.testing.synthetic import make_acquisition
    folder = FOLDER / f"acq-{'x'.join(map(str, tile))}"
    if not (folder / "tiles.json").exists():
        make_acquisition(folder, grid=(2, 2, 1), tile=tile, overlap=0.1, jitter=0, seed=3,
                         falloff=0.2, noise=True, tile_type="GRAY8", truth=False)
    return folder / "tiles.json"


def write_job(tiles: Path, master: str) -> Path:
    job = FOLDER / "job.toml"
    job.write_text(f'[input]\ntiles = "{tiles}"\n[output]\nuri = "out/volume"\nchunks = [4, 4, 4]\n'
                   f'block = [1, 1, 1]\ncodec = {{ name = "zstd", level = 1 }}\n'
                   f'[spark]\nmaster = "{master}"\n')
    return job


def start(job: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "jobs" / "export.py"), str(job)], cwd=FOLDER,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_midway(job: Path, tasks: int, fraction: float) -> dict:
    """Run the job and SIGKILL it once `fraction` of its tasks have written a ledger part."""
    run, began = start(job), time.perf_counter()
    parts = FOLDER / "out" / "volume.job"
    while len(list(parts.rglob("tasks/*.parquet"))) < fraction * tasks:
        if run.poll() is not None:
            raise RuntimeError("the first run ended before it could be killed:\n" + run.stderr.read()[-2000:])
        time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    return {"killed_after_seconds": round(time.perf_counter() - began, 1),
            "parts_recorded": len(list(parts.rglob("tasks/*.parquet")))}


def driver_sample(pid: int) -> tuple[int, float]:
    """(peak resident bytes, CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return peak, (int(fields[11]) + int(fields[12])) / CLOCK


def resume(job: Path) -> dict:
    """Run the job again to the end, sampling the driver process every half second."""
    run, began = start(job), time.perf_counter()
    peak, cpu = 0, 0.0
    while run.poll() is None:
        try:
            peak, cpu = driver_sample(run.pid)
        except (OSError, AttributeError):
            pass  # the process is ending
        time.sleep(0.5)
    out, err = run.communicate()
    if run.returncode:
        raise RuntimeError(f"the resumed run failed ({run.returncode}):\n{err[-3000:]}")
    resumed = re.search(r"resuming: (\d+) of (\d+) blocks", err)
    summary = json.loads((FOLDER / "out" / "volume.report" / "summary.json").read_text())
    return {"wall_seconds": round(time.perf_counter() - began, 1), "driver_peak_rss_bytes": peak,
            "driver_cpu_seconds": round(cpu, 1),
            "resumed_blocks": int(resumed.group(1)) if resumed else 0,
            "blocks": summary["dataset"]["blocks"], "tasks": summary["dataset"]["tasks"],
            "objects_written": summary["dataset"]["objects_written"],
            "objects_skipped": summary["dataset"]["objects_skipped"],
            "run_seconds": summary["run_seconds"], "startup_seconds": summary["startup_seconds"],
            "commit_seconds": summary["commit_seconds"], "task_seconds": summary["dataset"]["task_seconds"],
            "console": out.splitlines()}


def verify() -> dict:
    began = time.perf_counter()
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "verify.py"), "out/volume"], cwd=FOLDER,
                         capture_output=True, text=True)
    return {"seconds": round(time.perf_counter() - began, 1), "exit": run.returncode,
            "output": run.stdout.strip().splitlines()[-1:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tile", default="224x224x400")
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_run.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipelines.config import load_job
    from pipelines.plan.dryrun import dry_run
    tiles = acquisition(tuple(int(v) for v in args.tile.split("x")))
    shutil.rmtree(FOLDER / "out", ignore_errors=True)   # the dataset and everything beside it
    job = write_job(tiles, args.master)
    paper = dry_run(load_job(job))
    print("\n".join(paper.lines()), flush=True)
    killed = kill_midway(job, sum(paper.tasks), args.kill_at)
    print(f"killed the first run after {killed['killed_after_seconds']} s, "
          f"{killed['parts_recorded']} ledger parts recorded", flush=True)
    resumed = resume(job)
    checked = verify()
    blocks = resumed["blocks"]
    result = {"tile": args.tile, "master": args.master, "planned_blocks": sum(paper.blocks),
              "planned_tasks": sum(paper.tasks), "first_run": killed, "resumed_run": resumed,
              "verify": checked,
              "driver_ms_per_block": round(1000 * resumed["driver_cpu_seconds"] / blocks, 4)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(resumed["console"]))
    print(f"\n{blocks:,} blocks in {resumed['tasks']:,} tasks, {resumed['objects_written']:,} objects "
          f"written; the rerun resumed {resumed['resumed_blocks']:,} blocks and ran "
          f"{resumed['run_seconds']} s (+ {resumed['startup_seconds']} s start-up), commit "
          f"{resumed['commit_seconds']} s; driver peak {resumed['driver_peak_rss_bytes'] / 2**30:.2f} GiB "
          f"(goal < 1.5), driver CPU {resumed['driver_cpu_seconds']} s = "
          f"{result['driver_ms_per_block']} ms per block (goal < 0.5); verify {checked['seconds']} s, "
          f"exit {checked['exit']}: {' '.join(checked['output'])}")
    return 0 if checked["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
