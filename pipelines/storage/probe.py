"""Whether files can be written beside an input, found before long work instead of after.

Stitching, flatfield estimation and intensity matching write their results next to the
tile JSONs (or the project). An acquisition on read-only storage used to fail only when
those results were written, after every pair or tile had been measured.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pipelines.errors import OutputError
from pipelines.storage import S3Options, beside_store
from pipelines.storage import uri as uris


def check_writable_beside(paths: Iterable[str], what: str, s3: S3Options | None = None) -> None:
    """Create and remove a small file in each folder that will hold one of `paths`;
    OutputError (one line naming `what` is written and the folder) when one cannot be."""
    for folder, path in sorted({uris.split(p)[0]: p for p in paths}.items()):
        store = beside_store(path, s3)
        probe = f".{uris.name(path)}.write-probe-{uuid.uuid4().hex}"
        try:
            store.put(probe, b"")
            store.delete(probe)
        except Exception as e:   # read-only file system, permission, a refused bucket
            reason = getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"
            raise OutputError(f"{what} goes beside the input, but {folder} cannot be written "
                              f"({reason}); work on a copy of the input's JSON in a writable "
                              f"folder (its tile paths may be absolute)") from None
