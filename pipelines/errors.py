"""The error hierarchy that jobs turn into one line on stderr and exit code 2.

Every message says what was expected and what was found, and names the file or
job-file key it is about, so a user can fix the input without reading a traceback.
"""


class PipelineError(ValueError):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(PipelineError):
    """The job file or a --set override is wrong (unknown key, bad value, bad type)."""


class TileError(PipelineError):
    """The tile configuration JSON or a tile file is missing, unreadable or inconsistent."""


class OutputError(PipelineError):
    """The output location cannot be written, or already holds a committed dataset."""


class PlanError(PipelineError):
    """The job cannot be planned as configured (for example a block does not fit in memory)."""


class SparkStartError(PipelineError):
    """Spark could not start (no Java, an unreachable master, a bad Spark setting)."""


class RunFailed(RuntimeError):
    """The input was valid but the run failed (a task, the commit, the store), so jobs
    exit with code 1. Not a PipelineError. `detail` holds the full trace, for the log."""

    detail: str = ""


class BlockFailed(RunFailed):
    """A task failed on an executor (after its retries); names the block and cause."""


def run_job(work, show) -> int:
    """Run a job's `work()` and `show(result)`; the exit code a job returns: 0 done,
    2 a PipelineError (bad input, nothing written), 1 RunFailed (the run failed), each
    reported as one line on stderr instead of a traceback."""
    import sys
    try:
        result = work()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    show(result)
    return 0
