"""tile-verify: check a committed dataset against the ledger its export recorded.

    tile-verify OUTPUT_URI [--set s3.endpoint_url=http://host:9000]

Checks every recorded object (present, same size and crc32, decodes; recorded-empty
objects absent), the dataset digest, every metadata document against the digest its
commit recorded, and that the container holds nothing else; reads every object once, in
one process, with progress on stderr; prints each problem, naming the object (an array
whose every object is missing in one line), what to do, and a summary. Exit 0 when all
is well, 1 when any object or document is missing, changed or not ours, a folder cannot
be read, or the commit did not finish; 2 when there is nothing to verify (no job record,
a run that did not finish, a job still writing it) or the storage cannot be reached;
141 when its output's reader left (`| head`): stopped there.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pipelines.cli import docstring_details, output_parser, unreadable
from pipelines.errors import OutputError, run_job

if TYPE_CHECKING:
    from pipelines.maintenance.verify import Verification


def main(argv: list[str] | None = None) -> int:
    """tile-verify's command line; returns its exit code."""
    args = output_parser("tile-verify", "Verify a committed dataset.",
                         docstring_details(__doc__)).parse_args(argv)

    def work() -> tuple[str, Verification]:
        # imported here, under run_job's signal handlers: a Ctrl-C while its libraries
        # load is the one line too, not a traceback
        from pipelines.maintenance.verify import open_output, verify
        try:
            uri, store, beside = open_output(args.uri, args.overrides)
            return uri, verify(store, beside, uri, sys.stderr)
        except BrokenPipeError:   # our reader left (`… | head`): not the output's doing
            raise
        except OSError as e:   # a record or folder this user may not read
            raise OutputError(unreadable(e)) from None

    def show(found: tuple[str, Verification]) -> int:
        uri, result = found
        for problem in result.problems:
            print(f"problem: {problem}")
        for note in result.notes:
            print(f"note: {note}")
        for advice in result.advice:   # trial U: the problems said nothing of what to do
            print(f"what to do: {advice}")
        print(f"{uri}: {result.checked} objects checked ({result.written} written, "
              f"{result.skipped} empty), {len(result.problems)} "
              f"problem{'' if len(result.problems) == 1 else 's'}")
        return 0 if result.ok else 1

    return run_job(work, show, stopped="before it finished; nothing was changed")


if __name__ == "__main__":
    sys.exit(main())
