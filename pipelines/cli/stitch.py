"""tile-stitch: register a tile acquisition (measure every overlapping pair, solve).

    tile-stitch JOB.toml [--set section.key=value ...]
    spark-submit jobs/stitch.py JOB.toml [...]      # the same, on a cluster

Writes, next to each input tile JSON, `<name>-final.json` (the refined positions, in the
same format) and, next to the registered channel's, `<name>-stitching.json` (the report)
and `<name>-stitching.png` (the picture). For a BigStitcher project the refined result is
`<name>-stitched.xml` (a "Stitching Transform" prepended to each registered view). The job
file's [input] and [stitching] keys apply; [output] is not used and `output.uri` may be left
out (an export's job file serves as it is). While the stage JSON, the tile files and the [stitching] keys
are as the last registration found them, its results are reused (one line says so);
`--set stitching.force=true` registers again. Exit codes: 0 success; 2 bad input; 1 the
run failed.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from pipelines.cli import job_parser
from pipelines.config import keys_named, load_job
from pipelines.errors import run_job


def main(argv: list[str] | None = None) -> int:
    """tile-stitch: register the job's tiles and print the report; returns the exit code."""
    args = job_parser("tile-stitch", "Register a tile acquisition. While the stage JSON, the "
                      "tile files and the [stitching] keys are unchanged, the last registration "
                      "is reused; --set stitching.force=true registers again.",
                      example="stitching.search=20").parse_args(argv)

    def work() -> str:
        config = load_job(args.job, args.overrides, writes_output=False)
        from pipelines.registering import stitch  # imported late: config errors need no Spark
        from pipelines.report.console import stitch_report
        from pipelines.running import executor_for
        # the executor before anything: under spark-submit it makes the SparkContext at
        # once, which YARN's cluster mode needs even of a run that reuses the last
        # registration (review)
        with keys_named(args.job, args.overrides), executor_for(config, None) as executor:
            result = stitch(config, executor)
        # under spark-submit the session started before `stitch` (above), which then saw
        # it running and counted 0 s: the executor knows what it took (review of trial AG)
        return stitch_report(replace(result, startup_seconds=executor.startup_seconds))

    return run_job(work, print)


if __name__ == "__main__":
    sys.exit(main())
