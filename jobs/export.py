"""Export a tile acquisition to one fused N5 or Zarr v3 volume.

    spark-submit jobs/export.py JOB.toml [--set section.key=value ...]
    python jobs/export.py JOB.toml [--set section.key=value ...]
    python jobs/export.py JOB.toml --dry-run     # plan from the tile JSON only, no Spark

Exit codes: 0 success; 2 bad input (job file, tiles, output), nothing written;
1 the run failed (a block failed after Spark's retries), no metadata written.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.config import load_job
from pipelines.errors import run_job
from pipelines.formats import TENSORSTORE_DRIVERS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export.py", description="Fuse a tile acquisition into an N5 or Zarr v3 volume.")
    parser.add_argument("job", help="TOML job file (keys: see README, 'Job file')")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a job-file key, e.g. --set output.format=zarr3 (repeatable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what the output holds, even a committed dataset")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan from the tile JSONs alone (no tile file is opened, nothing is "
                             "written, no Spark) and print tasks, objects, bytes and memory")
    return parser.parse_args(argv)


def kvstore_spec(result, array: str) -> dict:
    """tensorstore's kvstore for one array of the output: a folder, or an S3 prefix."""
    uri = result.summary.uri
    if not uri.startswith("s3://"):
        return {"driver": "file", "path": f"{uri}/{array}"}
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    spec = {"driver": "s3", "bucket": bucket, "path": f"{prefix}/{array}/".lstrip("/")}
    s3 = result.plan.s3
    if s3 and s3.endpoint_url:
        spec["endpoint"] = s3.endpoint_url
    if s3 and s3.region:
        spec["aws_region"] = s3.region
    return spec


def report(result) -> str:
    s, plan = result.summary, result.plan
    mb = result.volume_bytes / 2**20
    stitching = result.stitching.run_seconds if result.stitching else 0.0
    export_seconds = result.run_seconds - stitching
    rate = mb / export_seconds if export_seconds > 0 else 0.0
    spec = {"driver": TENSORSTORE_DRIVERS[s.format], "kvstore": kvstore_spec(result, s.arrays[0])}
    ratio = result.volume_bytes / s.bytes_written if s.bytes_written else float("inf")
    lines = [
        f"dataset:  {s.uri}  (format {s.format}, layout {s.layout}, {s.levels} level"
        f"{'s' if s.levels > 1 else ''}, level 0 at {s.arrays[0]}: x,y,z = {list(s.shape)}, "
        f"{plan.array.dtype})",
        f"objects:  {s.objects_written} written, {s.objects_skipped} empty and skipped, "
        f"{s.bytes_written / 2**20:.1f} MiB stored (compression ratio {ratio:.2f})",
        f"time:     {export_seconds:.1f} s for {s.tasks} block tasks"
        f"{f' (+ {stitching:.1f} s stitching)' if result.stitching else ''} "
        f"(+ {result.startup_seconds:.1f} s Spark start-up); {rate:.1f} MiB/s of "
        f"{mb:.0f} MiB uncompressed output",
        f"spark:    master {result.master}",
        f"open it:  python -c 'import tensorstore as ts; "
        f"print(ts.open({json.dumps(spec)}).result())'",
    ]
    lines += [f"also:     {name} (next to the container)" for name in s.extra_files]
    if result.report:
        lines.append(f"report:   {result.report.folder}/ ({', '.join(result.report.files)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work():
        config = load_job(args.job, args.overrides)
        if args.dry_run:
            from pipelines.plan.dryrun import dry_run
            return "\n".join(dry_run(config).lines())
        from pipelines.spark import export  # imported late: config errors need no Spark
        return report(export(config, overwrite=args.overwrite))

    return run_job(work, print)


if __name__ == "__main__":
    sys.exit(main())
