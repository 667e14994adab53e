"""List, and with --remove delete, what a killed run left beside or inside an output.

    python jobs/clean.py OUTPUT_URI [--remove] [--set s3.endpoint_url=http://host:9000]

Orphans: temporary files of killed writers, unfinished multipart uploads, uncompacted or
superseded ledger records, and a lock whose driver died on this machine. An unfinished
run's chunks are kept: rerun the same job to resume from them.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.maintenance.clean import find_orphans, remove_orphans
from pipelines.errors import PipelineError
from pipelines.maintenance.verify import open_output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clean.py", description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the output.uri of the export")
    parser.add_argument("--remove", action="store_true", help="delete the orphans listed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="s3.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        uri, store, beside = open_output(args.uri, args.overrides)
        orphans = find_orphans(store, beside, uri)
        for _, item, why in orphans:
            print(f"orphan: {item}  ({why})")
        if args.remove:
            print(f"removed {remove_orphans(store, beside, uri)} orphans")
        else:
            print(f"{len(orphans)} orphans" + (" (add --remove to delete them)" if orphans else ""))
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
