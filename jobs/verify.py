"""Verify a committed dataset against the ledger its export recorded.

    python jobs/verify.py OUTPUT_URI [--set s3.endpoint_url=http://host:9000]

Checks every recorded object (present, same size and crc32; recorded-empty objects
absent) and the dataset digest; prints a summary. Exit 0 when all is well, 1 when any
object is missing or changed, 2 when there is nothing to verify.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.config import build_config
from pipelines.errors import PipelineError
from pipelines.storage import beside_store, open_store
from pipelines.storage.s3 import S3Options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify.py", description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the output.uri of the export")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="s3.KEY=VALUE",
                        help="S3 settings, as in the job file's [s3] table")
    args = parser.parse_args(argv)
    from pipelines.config import apply_override
    from pipelines.verify import verify
    try:
        raw = {"input": {"tiles": "unused"}, "output": {"uri": args.uri}}
        for item in args.overrides:
            apply_override(raw, item)
        config = build_config(raw)
        s3 = S3Options(**dict(config.s3))
        result = verify(open_store(config.output.uri, s3), beside_store(config.output.uri, s3),
                        config.output.uri)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(f"problem: {problem}")
    print(f"{config.output.uri}: {result.checked} objects checked ({result.written} written, "
          f"{result.skipped} empty), {len(result.problems)} problems")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
