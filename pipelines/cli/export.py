"""tile-export: fuse a tile acquisition into one N5 or Zarr volume.

    tile-export JOB.toml [--set section.key=value ...] [--overwrite] [--dry-run]
    spark-submit jobs/export.py JOB.toml [...]      # the same, on a cluster

Exit codes: 0 success, or nothing to do (the output holds this job's committed dataset);
2 bad input (job file, tiles, output), nothing written;
1 the run failed (a block failed after Spark's retries, or the commit), no metadata written;
130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM: run the same command again to resume.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from pipelines.cli import job_parser
from pipelines.config import keys_named, load_job
from pipelines.errors import PlanError, run_job


def main(argv: list[str] | None = None) -> int:
    """tile-export: fuse the job's tiles into the output (or, with --dry-run, print the
    plan); returns the exit code."""
    parser = job_parser("tile-export", "Fuse a tile acquisition into an N5 or Zarr volume.")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset this tool wrote there, even a committed one (files "
                             "it did not write stop it, and nothing is deleted)")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan from the tile JSONs alone (no tile file is opened, nothing is "
                             "written, no Spark) and print tasks, objects, bytes, memory and what the "
                             "output holds")
    args = parser.parse_args(argv)

    def work() -> str:
        config = load_job(args.job, args.overrides)
        with keys_named(args.job, args.overrides):
            if args.dry_run:
                from pipelines.commit.output import look_at_output
                from pipelines.plan.dryrun import dry_run
                paper = dry_run(config)   # then what the output holds, read only
                assert paper.spec is not None   # dry_run plans it
                holds, refusal = look_at_output(config.output.uri, config.s3_options(), paper.spec,
                                                args.overwrite, paper.anew)
                paper = replace(paper, output=holds, refusal=paper.refusal or refusal)
                if paper.refusal:   # the plan, then the line the real run would stop with
                    print("\n".join(paper.lines()))
                    raise PlanError(paper.refusal)
                return "\n".join(paper.lines())
            from pipelines.driver import export  # imported late: config errors need no Spark
            from pipelines.report.console import export_report
            return export_report(export(config, overwrite=args.overwrite))

    return run_job(work, print)


if __name__ == "__main__":
    sys.exit(main())
