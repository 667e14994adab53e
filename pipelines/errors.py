"""The error hierarchy that jobs turn into one line on stderr and exit code 2.

Every message says what was expected and what was found, and names the file or
job-file key it is about, so a user can fix the input without reading a traceback.
"""

from collections.abc import Iterator
from contextlib import contextmanager


class PipelineError(ValueError):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(PipelineError):
    """The job file or a --set override is wrong (unknown key, bad value, bad type)."""


class TileError(PipelineError):
    """The tile configuration JSON or a tile file is missing, unreadable or inconsistent."""


class OutputError(PipelineError):
    """The output location cannot be written, or already holds a committed dataset."""


class LedgerUnreadable(OutputError):
    """A ledger file beside the output (`objects.parquet`, a task's part) is damaged, or a
    committed dataset's ledger is missing: the message names the file; `key` is its key
    beside the output."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class NoAnswer(OutputError):
    """A check could not ask a store: its endpoint gave no answer (a connection refused,
    closed or timed out, a server error) or there were no credentials to ask with; as
    opposed to an answer that refuses (a missing bucket, denied credentials). The dry
    run, made away from the cluster, says it could not look instead of refusing."""


class PlanError(PipelineError):
    """The job cannot be planned as configured (for example a block does not fit in memory)."""


class SparkStartError(PipelineError):
    """Spark could not start (no Java, an unreachable master, a bad Spark setting)."""


class AlreadyDone(Exception):
    """The output already holds this job's committed dataset: there is nothing to do, and
    jobs exit with code 0, so that a scheduler's resubmission or a script's rerun of a
    finished job succeeds. Not a PipelineError: nothing is wrong."""


class RunFailed(RuntimeError):
    """The input was valid but the run failed (a task, the commit, the store), so jobs
    exit with code 1. Not a PipelineError. `detail` holds the full trace, for the log."""

    detail: str = ""


class StoreUnavailable(RunFailed):
    """A store stopped answering: a request had no answer within the bound the job sets
    (s3.request_timeout × s3.max_attempts). The message names the endpoint and the bound."""


class RecordTaken(RunFailed):
    """The output's job record is another run's now (`records.taken_record`): this run
    stops without writing to it."""


class BlockFailed(RunFailed):
    """A task failed on an executor (after its retries); names the block and cause."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler stopping the job: SLURM and LSF send it before the
    kill). A BaseException, like KeyboardInterrupt for SIGINT, so no `except Exception`
    on the way up swallows it."""


class Interrupted(BaseException):
    """The run was stopped by a signal (its job record marked interrupted, unless the
    store did not answer: `store_silent`); `signum` decides the exit code (128 + signum)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.store_silent = False   # the output's store did not answer while marking


def cause(error: BaseException) -> str:
    """An exception from a library (boto3, a codec, the file system) in one line: its
    type and the first line of its message, for a message of our own that says where."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def stopping_signal(error: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT) or Terminated (SIGTERM)."""
    import signal
    return int(signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


# The stop signal this job received (None: none yet), kept after it was raised: raised in
# a finaliser (py4j's, run by the garbage collector) Python prints "Exception ignored" and
# carries on, and inside a C extension's import it comes out as an ImportError (trial AH:
# a Ctrl-C lost, the export run to its end; a traceback). `raise_if_stopped` raises it
# again where work goes on, `run_job` reports an exception after it with the stop.
_received: int | None = None
_jobs_open = 0   # `job` contexts open: a job's own stop is not forgotten inside one
# Signals held back while files that belong together are written (`signals_deferred`);
# None: not deferring.
_deferred: list[int] | None = None


def _on_signal(signum, frame):
    """SIGINT → KeyboardInterrupt, SIGTERM → Terminated, raised where the main thread is
    (held back inside `signals_deferred`). Logging is silenced first: py4j logs a
    traceback when a call to the JVM is cut short, and the job is about to say in one line
    what happened."""
    import logging
    global _received
    logging.disable(logging.ERROR)
    _received = signum
    if _deferred is not None:
        _deferred.append(signum)
        return
    _raise_stop(signum)


def _raise_stop(signum: int):
    import signal
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def raise_if_stopped() -> None:
    """Raise the stop signal this job received, if any: called where work goes on (an
    executor's loop), so that a stop swallowed on its way (`_received`) still stops it."""
    if _received is not None and _deferred is None:
        _raise_stop(_received)


def stop_received() -> int | None:
    """The stop signal this job received, if any (`_received`)."""
    return _received


def forget_stop() -> None:
    """A new job in this process (a test's, a notebook's) starts without the last one's stop."""
    global _received
    _received = None


@contextmanager
def job() -> Iterator[None]:
    """A job's span: the outermost one begins without the stop an earlier job in this
    process received (`forget_stop`: a notebook's second export stopped by itself at its
    first task, after a Ctrl-C of the first); inside one, a stop received since it began
    is its own (review: a Ctrl-C swallowed while the export was imported was forgotten
    when the driver's flow began, and the job ran to its end). Entered by `run_job` and by
    the driver's flows (`running.executor_for`), so a notebook's call is a job too."""
    global _jobs_open
    if _jobs_open == 0:
        forget_stop()
    _jobs_open += 1
    try:
        yield
    finally:
        _jobs_open -= 1


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back while the body runs, and raised after it (when it
    ended normally): for a few files that belong together, which a stop between them would
    leave half new (trial AH: a registration's positions new, its picture the last one's).
    Keep the body short: a stop waits for it."""
    global _deferred
    outer = _deferred
    held: list[int] = [] if outer is None else outer
    _deferred = held
    try:
        yield
    finally:
        _deferred = outer
    if outer is None and held:
        _raise_stop(held[0])


def install_signal_handlers() -> None:
    """Our SIGINT and SIGTERM handlers (`_on_signal`), in the main thread only; called by
    `run_job` and again once Spark has started (pyspark installs its own SIGINT handler,
    which calls the JVM from inside the handler)."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def run_job(work, show, stopped: str = "before the run started; nothing was written") -> int:
    """Run a job's `work()` and `show(result)`; the exit code a job returns: 0 done (or
    the code `show` returns, or AlreadyDone: said on stdout), 2 a PipelineError (bad
    input, nothing written, or a module this Python lacks), 1 RunFailed
    (the run failed) or an OSError (the file system, e.g. a full disk), 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM (`stopped` says what
    that left), 141 when stdout's reader left while `work` printed (a shell's SIGPIPE
    code; `stopped` says what that left; once `show` prints, the work is done: 0), each
    reported as one line on stderr instead of a traceback."""
    install_signal_handlers()
    with job():
        return _run(work, show, stopped)


def _run(work, show, stopped: str) -> int:
    """`run_job`'s body: `work`, `show` and what each way of ending prints."""
    import signal
    import sys
    try:
        result = work()
    except BrokenPipeError as e:   # its reader left early (`tile-clean … | head -1`, trial AD)
        if not _stdout_closed():
            print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)   # a pipe of its own
            return 1
        _stdout_gone()   # what was asked may be half done: say so, as a shell's SIGPIPE code does
        print(f"stopped when the reader of its output left (a broken pipe) {stopped}",
              file=sys.stderr)
        return 128 + signal.SIGPIPE
    except AlreadyDone as e:
        print(f"nothing to do: {e}")
        return 0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:   # a dependency this Python lacks, imported where the
        # work needs it (review: a traceback where the job scripts promise one line); one of
        # ours missing is a bug or a zip of an older checkout: its traceback says which
        if (e.name or "").split(".")[0] == "pipelines":
            raise
        print(f"error: this Python cannot import {e.name!r}, which this project needs ({e}): "
              f"install its dependencies (make setup, or pip install . in this environment)",
              file=sys.stderr)
        return 2
    except Exception as e:
        signum = stop_received()
        if signum is not None and not isinstance(e, OSError):
            # what a stop caused where it landed (trial AH: an ImportError, a Ctrl-C inside
            # matplotlib's import): the stop is the news, what it broke said after it (not
            # what was written: the stop may have come at any point; review)
            print(f"interrupted by {signal.Signals(signum).name} (then {cause(e)})", file=sys.stderr)
            return 128 + signum
        if not isinstance(e, OSError):
            raise
        # trial O: a disk that filled beside the tile JSONs while the results of minutes of
        # work were written was a traceback; the error names the file (and a stop before it)
        after = f" (after {signal.Signals(signum).name})" if signum is not None else ""
        print(f"failed: {type(e).__name__}: {e}{after}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum
    except (KeyboardInterrupt, Terminated) as e:   # before the run started: nothing to resume
        signum = stopping_signal(e)
        print(f"interrupted by {signal.Signals(signum).name} {stopped}", file=sys.stderr)
        return 128 + signum
    try:
        return show(result) or 0
    except BrokenPipeError:   # its reader left early (`… --dry-run | head`): the job is done
        _stdout_gone()
    return 0


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader left: poll says so of its write end (POLLERR)
    without writing; the failed write's bytes are gone from the buffer, so a flush cannot."""
    import select
    import sys
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):   # no such stream, or no poll here
        return False


def _stdout_gone() -> None:
    """Point stdout at /dev/null once its reader has closed the pipe, so that Python's
    flush at exit does not raise BrokenPipeError a second time, as a traceback."""
    import os
    import sys
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
