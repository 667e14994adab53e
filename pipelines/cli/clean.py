"""tile-clean: list, and with --remove delete, what a killed run left of one output.

    tile-clean OUTPUT_URI [--remove] [--set s3.endpoint_url=http://host:9000]

Orphans: temporary files of killed writers (by the exact temporary names this tool's
writes use), unfinished multipart uploads of keys inside the output or of its records,
uncompacted or superseded ledger records (by the names this tool's ledgers use), and a
lock whose driver died on this machine, all of this output only (never of a sibling
dataset). An output without its job record beside it is refused (nothing there can be
told to be this tool's), but for the lock of a job whose driver died here before it
wrote its record: that lock is listed. An unfinished run's chunks are kept: rerun the same job to resume
from them. The ledger parts of a committed dataset that was never compacted (the job
stopped right after its commit) are its only record: they are kept, and --remove
compacts them. While a running job holds the lock nothing is listed or removed.
Exit 0 done, 1 a ledger file it must read is damaged or a folder could not be read
(named; what it holds was not looked at), 2 bad input (no job record) or a running job,
141 its output's reader left (`| head`): stopped there.
"""

from __future__ import annotations

import sys

from pipelines.cli import docstring_details, output_parser, unreadable
from pipelines.errors import LedgerUnreadable, OutputError, run_job


def main(argv: list[str] | None = None) -> int:
    """tile-clean's command line; returns its exit code."""
    parser = output_parser("tile-clean", "List or remove what a killed run left behind.",
                           docstring_details(__doc__))
    parser.add_argument("--remove", action="store_true", help="delete the orphans listed")
    args = parser.parse_args(argv)

    def work() -> int:
        try:
            return _clean(args.uri, args.overrides, args.remove)
        except LedgerUnreadable as e:   # a problem found, as tile-verify reports it
            print(f"problem: {e}")
            return 1
        except BrokenPipeError:   # our reader left (`… | head`): not the output's doing
            raise
        except OSError as e:   # a record or folder this user may not read
            raise OutputError(unreadable(e)) from None

    return run_job(work, lambda code: code,
                   stopped="before it finished; what was removed is gone, run it again for the rest")


def _clean(uri: str, overrides: list[str], remove: bool) -> int:
    # imported here, under run_job's signal handlers: a Ctrl-C while its libraries load
    # is the one line too, not a traceback
    from pipelines.maintenance.clean import (
        compact_ledger,
        find_orphans,
        remove_orphans,
        uncompacted_ledger,
        unlooked_at,
    )
    from pipelines.maintenance.verify import open_output
    uri, store, beside = open_output(uri, overrides)
    orphans = find_orphans(store, beside, uri)
    for orphan in orphans:
        print(f"orphan: {orphan.where}  ({orphan.why})")
    parts = uncompacted_ledger(beside, uri)
    if parts:
        print(f"ledger: {parts}/ is not compacted; its parts are the only record of the "
              f"committed dataset's objects, so they are kept"
              + ("" if remove else " (--remove compacts them)"))
    if remove:
        print(f"removed {remove_orphans(store, beside, uri)} orphans")
        if parts:
            print(f"compacted the ledger: {compact_ledger(beside, uri)} objects in "
                  f"{parts}/objects.parquet")
    else:
        print(f"{len(orphans)} orphans" + (" (add --remove to delete them)" if orphans else ""))
    unread = unlooked_at(store, beside)
    for folder in unread:
        print(f"problem: {folder}")
    return 1 if unread else 0


if __name__ == "__main__":
    sys.exit(main())
