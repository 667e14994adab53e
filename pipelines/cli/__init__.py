"""The console scripts: `tile-export`, `tile-stitch`, `tile-flatfield` (jobs, from a job
file) and `tile-verify`, `tile-clean` (maintenance, on an existing output).

Each module's `main(argv)` parses its arguments, runs the job through `pipelines.driver`,
`pipelines.illumination` or `pipelines.maintenance` and returns the exit code
(`pipelines.errors.run_job`). The
`jobs/*.py` files call the same `main`, for `spark-submit`, which needs a script path.
"""

from __future__ import annotations

import argparse


def job_parser(prog: str, description: str,
               example: str = "output.format=zarr3") -> argparse.ArgumentParser:
    """A parser with the arguments every job takes: the job file and --set overrides
    (`example`: a KEY=VALUE the command uses, shown in the --set help)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("job", help="TOML job file (keys: see README, 'Job file')")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override a job-file key, e.g. --set {example} (repeatable)")
    return parser


def output_parser(prog: str, description: str, details: str = "") -> argparse.ArgumentParser:
    """A parser for the commands that work on an existing output: its URI and S3 settings;
    `details` (the command's docstring after its usage line) closes its --help (trial U:
    --help showed neither what is checked nor the exit codes)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", help="the output.uri of the export")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="s3.KEY=VALUE", help="S3 settings, as in the job file's [s3] table")
    return parser


def unreadable(error: OSError) -> str:
    """One line for a file or folder the maintenance commands cannot read (permissions,
    a file system that went away), instead of a traceback."""
    where = error.filename if error.filename is not None else "the output"
    return f"cannot read {where}: {error.strerror or type(error).__name__}"


def docstring_details(doc: str | None) -> str:
    """A command module's docstring without its first line and usage paragraph."""
    return (doc or "").strip().split("\n\n", 2)[-1].strip()
