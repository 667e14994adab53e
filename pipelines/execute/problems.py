"""One line for what stopped a task on an executor, naming the file or folder at fault.

A task's failure reaches the user as one line (`BlockFailed`), so the line must carry
the root cause itself: for a file system that refused (read-only, full, a folder removed
or replaced by a file while the job ran) that is the folder, not the temporary name of a
put nor a path below a file that took a folder's place.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.storage.local import TEMP_SUFFIX


def cause_line(error: BaseException) -> str:
    """`Type: message`, with an OSError about a path told as the folder or file at fault."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{type(error).__name__}: {_path_problem(error)}"
    return f"{type(error).__name__}: {error}"


def _path_problem(error: OSError) -> str:
    path = Path(os.fsdecode(error.filename))
    reason = error.strerror or str(error)
    if isinstance(error, NotADirectoryError):
        blocker = _file_in_the_way(path)
        if blocker is not None:   # e.g. a level folder replaced by a file mid-run
            return f"{blocker} is a file, not a folder"
    if path.name.endswith(TEMP_SUFFIX):   # a put's temporary file: the folder refused it
        return f"cannot write in {path.parent}: {reason}"
    return f"{reason}: {path}"


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of `path`'s folders that is a file, if one is."""
    for candidate in path.parents:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            return None
    return None
