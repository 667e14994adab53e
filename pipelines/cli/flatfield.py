"""tile-flatfield: estimate each channel's flatfield (gain S and offset T) from its tiles.

    tile-flatfield JOB.toml [--set section.key=value ...]
    spark-submit jobs/flatfield.py JOB.toml [...]      # the same, on a cluster

Executors reduce the tiles to per-pixel intensity histograms at reduced resolution; the
driver adds them, fits S and T and writes, per channel, `<tile-json-stem>-flatfield/`
beside the tile JSON (or the folders fusion.flatfield names) holding `S.tif`, `T.tif`,
`flatfield.json` and `flatfield.png`. An export then applies them with
`fusion.flatfield = "auto"`. Exit codes: 0 success; 2 bad input (nothing written); 1 the
run failed.
"""

from __future__ import annotations

import sys

from pipelines.cli import job_parser
from pipelines.config import keys_named, load_job
from pipelines.errors import run_job


def main(argv: list[str] | None = None) -> int:
    """tile-flatfield: estimate each channel's flatfield and write it beside its tile JSON;
    returns the exit code."""
    args = job_parser("tile-flatfield", "Estimate the flatfield of a tile acquisition.",
                      example="flatfield.per_slice=true").parse_args(argv)

    def work() -> str:
        config = load_job(args.job, args.overrides, writes_output=False)
        from pipelines.corrections import estimate_flatfield
        from pipelines.running import executor_for  # imported late: config errors need no Spark
        with keys_named(args.job, args.overrides), executor_for(config, None) as executor:
            run = estimate_flatfield(config, executor, sys.stdout)
        per_tile = run.seconds / max(run.tiles, 1)
        return (f"flatfield of {run.tiles} tiles in {run.seconds:.1f} s ({per_tile * 1000:.0f} ms "
                f"per tile; + {executor.startup_seconds:.1f} s Spark start-up): {', '.join(run.folders)}")

    return run_job(work, print)


if __name__ == "__main__":
    sys.exit(main())
