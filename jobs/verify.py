"""Verify a committed dataset against the ledger its export recorded.

    python jobs/verify.py OUTPUT_URI [--set s3.endpoint_url=http://host:9000]

Checks every recorded object (present, same size and crc32; recorded-empty objects
absent) and the dataset digest; prints a summary. Exit 0 when all is well, 1 when any
object is missing or changed, 2 when there is nothing to verify.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.errors import PipelineError
from pipelines.maintenance.verify import open_output, verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify.py", description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the output.uri of the export")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="s3.KEY=VALUE",
                        help="S3 settings, as in the job file's [s3] table")
    args = parser.parse_args(argv)
    try:
        uri, store, beside = open_output(args.uri, args.overrides)
        result = verify(store, beside, uri)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(f"problem: {problem}")
    print(f"{uri}: {result.checked} objects checked ({result.written} written, "
          f"{result.skipped} empty), {len(result.problems)} problems")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
