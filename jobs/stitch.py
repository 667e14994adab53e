"""Register a tile acquisition: measure every overlapping pair, solve for tile positions.

    spark-submit jobs/stitch.py JOB.toml [--set section.key=value ...]
    python jobs/stitch.py JOB.toml [--set section.key=value ...]

Writes, next to each input tile JSON, `<name>-final.json` (the refined positions, in the
same format) and, next to the registered channel's, `<name>-stitching.json` (the report)
and `<name>-stitching.png` (the picture). The job file's [stitching] keys apply; the
output section is not used. Exit codes: 0 success; 2 bad input; 1 the run failed.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.config import load_job
from pipelines.errors import run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stitch.py", description=__doc__.split("\n")[0])
    parser.add_argument("job", help="TOML job file (keys: see README, 'Job file' and 'Stitching')")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a job-file key (repeatable)")
    args = parser.parse_args(argv)

    def work():
        config = load_job(args.job, args.overrides)
        from pipelines.spark import stitch, stitch_summary  # config errors need no Spark
        result = stitch(config)
        return (f"{stitch_summary(result)}\ntime:      {result.run_seconds:.1f} s "
                f"(+ {result.startup_seconds:.1f} s Spark start-up)")

    return run_job(work, print)


if __name__ == "__main__":
    sys.exit(main())
