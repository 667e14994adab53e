"""How a run that does not finish ends: one line for the user, the job record marked
(failed or interrupted), the full trace kept beside the container (or on this machine when
the store is gone), the lock released unless the store stopped answering."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from typing import Any

from pipelines.commit import ledger
from pipelines.commit.lock import release_lock
from pipelines.commit.records import (
    TAKEN_OVER,
    Sidecars,
    read_json,
    record_failure,
    save_trace_here,
    taken_record,
    update_record,
)
from pipelines.errors import (
    BlockFailed,
    Interrupted,
    PipelineError,
    RecordTaken,
    RunFailed,
    StoreUnavailable,
    cause,
)
from pipelines.plan import ExportPlan
from pipelines.storage import Store


def release_after(plan: ExportPlan, beside: Store, error: BaseException) -> None:
    """Release the lock after `error` ended the run, never hiding that error; not at all
    when the store stopped answering (each request would wait out the bound again; the
    next run on this machine takes over the lock of a driver that is gone)."""
    if store_gone(error) or (isinstance(error, Interrupted) and error.store_silent):
        return
    try:
        release_lock(plan, beside)
    except Exception:   # the store may be what failed: the run's own error goes out
        pass


# What a failure in each phase of a locked run means for the output.
_CONSEQUENCE = {
    "run": "no metadata was written",
    "commit": "the commit did not finish, so the dataset is incomplete",
    "ledger": "the dataset is committed, but its ledger could not be compacted",
}


def failed(plan: ExportPlan, beside: Store, error: Exception, phase: str) -> Exception:
    """The one-line error a failed run raises, after marking the job record failed and
    saving the full trace beside the container."""
    detail = getattr(error, "detail", "") or traceback.format_exc()
    taken = _taken(plan, beside, error)
    if taken:   # the record, and what is beside the output, are another run's now
        try:
            where = f"the full trace is in {save_trace_here(plan, detail)}"
        except OSError:
            where = "the full trace could not be saved"
        said = isinstance(error, RecordTaken) or TAKEN_OVER in str(error)
        stopped = "" if said else f"; this run stopped on {cause(error)}"
        return with_detail(RecordTaken(f"{taken}{stopped}; {where}"), detail)
    if isinstance(error, PipelineError):
        message = str(error)
    elif isinstance(error, RunFailed):
        message = f"{error}; {_CONSEQUENCE[phase]}"
    else:  # the store or the driver itself failed: still one line, never a traceback
        message = f"{type(error).__name__}: {error}; {_CONSEQUENCE[phase]}"
    where = save_trace(plan, beside, error, message, detail)
    if isinstance(error, PipelineError):
        return type(error)(f"{message}; {where}")
    kind = BlockFailed if isinstance(error, BlockFailed) else RunFailed
    return with_detail(kind(f"{message}; {where}"), detail)


def _taken(plan: ExportPlan, beside: Store, error: BaseException) -> str:
    """`records.taken_record`, '' when the store cannot tell (it may be what failed)."""
    if isinstance(error, RecordTaken):
        return str(error)
    if store_gone(error):
        return ""
    try:
        return taken_record(plan, beside)
    except Exception:
        return ""


def store_gone(error: BaseException) -> bool:
    """Whether `error` says the output's store stopped answering (StoreUnavailable, here
    or in a task: a task's failure arrives as its message)."""
    return isinstance(error, StoreUnavailable) or f"{StoreUnavailable.__name__}: " in str(error)


def save_trace(plan: ExportPlan, beside: Store, error: Exception, message: str,
                detail: str) -> str:
    """Mark the job record failed and keep the trace beside the container, or on this
    machine when the store cannot take it; the words that say where, for the one line."""
    if not store_gone(error):
        try:
            return f"the full trace is in {record_failure(plan, beside, message, detail)}"
        except Exception as cause:  # e.g. the disk that failed the block is full
            why = f"the trace could not be saved beside the output ({type(cause).__name__})"
    else:   # every request would wait out the bound again
        why = "the store did not answer, so the job record was not updated"
    try:
        return f"{why}; the full trace is in {save_trace_here(plan, detail)}"
    except OSError:
        return f"{why}, nor here"


# How long a stopped run waits for the store to take its job record. A user presses
# Ctrl-C often because the store stopped answering, and each request would wait out
# s3.request_timeout x s3.max_attempts (2.5 minutes by default) while signals are ignored.
INTERRUPT_SECONDS = 10.0


def interrupted(plan: ExportPlan, beside: Store, signum: int) -> Interrupted:
    """The one line for a run stopped by a signal, after marking the job record
    interrupted (within INTERRUPT_SECONDS: after that the store is taken as silent and
    the lock is left to the next run); later signals are ignored meanwhile."""
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    outcome: dict[str, Any] = {}

    def mark() -> None:
        record = read_json(beside, Sidecars.of(plan.output.uri).job_record)
        outcome["taken"] = taken_record(plan, beside, record)
        if outcome["taken"]:
            return
        # trial M: a signal in the moments after the record said committed (the compaction
        # of the ledger) marked a complete dataset interrupted, and verify then failed it
        if record.get("status") == "committed":
            outcome["committed"] = 1
            return
        outcome["done"] = ledger.read_parts(beside, ledger.folder(plan), objects=False).block_count
        update_record(plan, beside, status="interrupted", interrupted=time.time(),
                      signal=signal.Signals(signum).name)
        outcome["marked"] = 1

    # a daemon thread: a request the store never answers must not keep the process alive
    marking = threading.Thread(target=_quietly, args=(mark,), name="mark-interrupted", daemon=True)
    marking.start()
    marking.join(INTERRUPT_SECONDS)
    resume = "run the same command again to resume"
    if "committed" in outcome:
        return after_commit(plan.output.uri, signum)
    if outcome.get("taken"):
        return Interrupted(f"interrupted; {outcome['taken']}", signum)
    if "marked" in outcome:
        # "at least": tasks still stopping may record a few blocks more after this count
        return Interrupted(f"interrupted with at least {outcome['done']} of "
                           f"{plan.task_plan.blocks} blocks recorded; {resume}", signum)
    if marking.is_alive():
        stopped = Interrupted(f"interrupted; the output's store did not answer within "
                              f"{INTERRUPT_SECONDS:.0f} s, so the job record was not marked; "
                              f"{resume}", signum)
        stopped.store_silent = True   # release_after leaves the lock alone
        return stopped
    return Interrupted(f"interrupted; the job record could not be marked; {resume}", signum)


def after_commit(uri: str, signum: int) -> Interrupted:
    """The line for a signal that arrives once the dataset is committed (while the ledger
    is compacted, the report written or Spark stopped): the dataset is complete, nothing
    needs resuming (`tile-clean` compacts a ledger left as parts)."""
    return Interrupted(f"interrupted by {signal.Signals(signum).name} after the commit: the "
                       f"dataset at {uri} is complete (its run report may be missing)", signum)


def _quietly(work) -> None:
    """Run `work`; its failure is the caller's to notice (the store may be what went away)."""
    try:
        work()
    except Exception:
        pass


def with_detail(error: RunFailed, detail: str) -> RunFailed:
    error.detail = detail
    return error
