"""Summarise a py-spy raw profile of an export: where Spark's Python workers spend time.

    py-spy record --subprocesses -r 200 -f raw -o profile.txt -- \\
        .venv/bin/python benchmarks/throughput.py --quick --tools ours-overlap \\
        --cases n5:zstd-1 --no-s3 --no-scaling
    python benchmarks/profile_summary.py profile.txt [--top 15]

Only samples of pyspark worker processes (forks of `pyspark.daemon`) count. Prints the
share of those samples spent inside (inclusive) each pipeline step, and the top functions
by self time (the innermost Python frame; time in C code such as numpy or zstd is
charged to the Python function that called it).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

# step label: a regular expression over one frame "function (file:line)"
STEPS = {
    "block task (run_block)": r"^run_block \(",
    "fusion (fusion.fuse)": r"^fuse \(.*fusion\.py",
    "  tile reads (read_region)": r"^read_region \(",
    "  tile data → float32 (sample_nearest)": r"^sample_nearest \(",
    "  linear weights (edge_weights)": r"^edge_weights \(",
    "  blending (_linear)": r"^_linear \(",
    "  cast to the output type (cast)": r"^cast \(.*fusion\.py",
    "encode + put objects (_Writer.write)": r"^_Writer\.write \(",
    "  encode (encode_region)": r"^encode_region \(",
    "    compressor (numcodecs encode)": r"^compress \(.*base\.py",
    "  atomic put (store.put)": r"^(LocalStore|S3Store)\.put \(",
    "ledger record": r"^(flush|encode_part) \(.*ledger\.py",
    # leaf only (the daemon's manager is the bottom frame of every worker stack):
    # pyspark's daemon runs gc.collect() after every task of a reused worker
    "pyspark gc.collect() between tasks": r"=^manager \(daemon\.py",
}


def worker_stacks(path: str):
    """(frames outermost first, count) of every stack sampled in a pyspark worker."""
    with open(path) as lines:
        text = lines.read().splitlines()
    for line in text:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "pyspark.daemon" not in stack:
            continue
        parts = stack.split(";")
        # the worker is a process frame below the daemon's own process frame
        procs = [i for i, p in enumerate(parts) if p.startswith("process ")]
        daemon = [i for i in procs if "pyspark.daemon" in parts[i]]
        if len(daemon) < 2:
            continue   # the daemon itself, not one of its forked workers
        yield [p for p in parts[daemon[-1] + 1:] if not p.startswith("process ")], int(count)


def summarise(path: str, top: int) -> str:
    total, steps, selfs = 0, Counter(), Counter()
    compiled = {k: re.compile(v.lstrip("=")) for k, v in STEPS.items()}
    for frames, count in worker_stacks(path):
        total += count
        for label, pattern in compiled.items():
            leaf_only = STEPS[label].startswith("=")
            if (leaf_only and frames and pattern.search(frames[-1])) or (
                    not leaf_only and any(pattern.search(f) for f in frames)):
                steps[label] += count
        if frames:
            selfs[frames[-1]] += count
    lines = [f"worker samples: {total}", "", "| step (inclusive) | share of worker samples |",
             "| --- | --- |"]
    lines += [f"| {label} | {100 * steps[label] / max(total, 1):.1f} % |" for label in STEPS]
    lines += ["", "| innermost Python frame (self) | share |", "| --- | --- |"]
    lines += [f"| `{name}` | {100 * n / max(total, 1):.1f} % |" for name, n in selfs.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
