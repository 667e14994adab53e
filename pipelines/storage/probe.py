"""Whether files can be written beside an input, found before long work instead of after.

Stitching, flatfield estimation and intensity matching write their results next to the
tile JSONs (or the project). An acquisition on read-only storage used to fail only when
those results were written, after every pair or tile had been measured.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.errors import OutputError
from pipelines.storage import S3Options, open_store
from pipelines.storage import uri as uris


def check_writable_beside(paths: Iterable[str], what: str, s3: S3Options | None = None) -> None:
    """`Store.check_writable` of each folder that will hold one of `paths` (the check an
    output gets: nothing is created there, the deepest folder that exists is probed);
    OutputError in one line that says `what` goes beside the input."""
    for folder in sorted({uris.parent(p) for p in paths}):
        try:
            open_store(folder, s3).check_writable(f"{what} goes beside the input")
        except OutputError as e:
            raise OutputError(f"{e}; work on a copy of the input's JSON in a writable folder "
                              f"(its tile paths may be absolute)") from None
