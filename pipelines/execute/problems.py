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

# botocore's errors when the process has no way to S3: on an executor, after the driver
# had one (its checks passed), it is the executors' environment that lacks what the
# driver's has (trial Q: each task failed 4 times, then 'NoCredentialsError: Unable to
# locate credentials' named no one)
_NO_CREDENTIALS = ("NoCredentialsError", "ProfileNotFound", "PartialCredentialsError")
EXECUTOR_CREDENTIALS = ("the executors' environment lacks the S3 credentials the driver "
                        "found: give them the same (AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE with "
                        "AWS_PROFILE or s3.profile, set where the workers start; "
                        "docs/clusters.md, S3 credentials)")


def cause_line(error: BaseException) -> str:
    """`Type: message`, with an OSError about a path told as the folder or file at fault,
    and missing S3 credentials told as the executors' environment's."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{type(error).__name__}: {_path_problem(error)}"
    if type(error).__name__ in _NO_CREDENTIALS:
        return f"{type(error).__name__}: {error}; {EXECUTOR_CREDENTIALS}"
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
