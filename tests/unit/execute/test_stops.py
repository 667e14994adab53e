"""Stops (SIGINT, SIGTERM) that land where Python cannot raise them as they are: held back
while files that belong together are written, raised again where a stop was swallowed,
and reported as the stop when they broke something on their way (trial AH)."""

from __future__ import annotations

import os
import signal

import pytest

from pipelines import errors
from pipelines.errors import forget_stop, raise_if_stopped, run_job, signals_deferred
from pipelines.execute.executor import Batch, LocalExecutor


@pytest.fixture
def our_handlers():
    """The job's SIGINT and SIGTERM handlers for one test, pytest's back afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    errors.install_signal_handlers()
    forget_stop()
    yield
    forget_stop()
    for s, handler in before.items():
        signal.signal(s, handler)


def test_a_stop_inside_a_deferred_section_waits_for_its_end(our_handlers):
    written = []
    with pytest.raises(KeyboardInterrupt), signals_deferred():
        written.append("positions")
        os.kill(os.getpid(), signal.SIGINT)
        written.append("picture")   # not cut off between the two
    assert written == ["positions", "picture"]
    with pytest.raises(errors.Terminated), signals_deferred():
        with signals_deferred():   # nested: raised once, at the outer end
            os.kill(os.getpid(), signal.SIGTERM)
        written.append("report")
    assert written[-1] == "report"


def test_a_stop_swallowed_on_its_way_stops_the_next_task(our_handlers):
    """A KeyboardInterrupt raised inside a finaliser (py4j's) is printed as 'Exception
    ignored' and lost: the export then ran every block and exited 0."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:
        pass   # as a finaliser would
    done = []
    batch = Batch(lambda shared, item, attempt: done.append(item), None, [1, 2, 3], "three tasks")
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().run(batch, lambda done, stored: None)
    assert done == []
    with pytest.raises(KeyboardInterrupt):
        raise_if_stopped()


def test_an_error_a_stop_caused_is_reported_as_the_stop(our_handlers, capsys):
    """A Ctrl-C inside matplotlib's import came out as 'ImportError: initialization
    failed', a traceback and exit 1."""
    def work():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
    assert run_job(work, print) == 130
    assert capsys.readouterr().err == "interrupted by SIGINT (then ImportError: initialization failed)\n"
    # the next job in this process starts without it
    assert run_job(lambda: "done", print) == 0


def test_an_error_without_a_stop_is_still_an_error(our_handlers):
    with pytest.raises(ImportError):
        run_job(lambda: (_ for _ in ()).throw(ImportError("initialization failed")), print)


def test_a_disk_error_after_a_stop_is_still_the_disk_error(our_handlers, capsys):
    """Review: an OSError after a stop (a full disk) was reported as the stop, with
    'nothing was written', and its file lost."""
    def work():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            raise OSError(28, "No space left on device", "tiles-final.json")
    assert run_job(work, print) == 1
    assert capsys.readouterr().err == ("failed: OSError: [Errno 28] No space left on device: "
                                       "'tiles-final.json' (after SIGINT)\n")


def test_a_jobs_own_stop_swallowed_before_its_executor_still_stops_it(our_handlers, capsys):
    """Review: entering the executor forgot a stop the job had received (swallowed while the
    export's modules were imported): it ran to its end, exit 0."""
    from pipelines.running import executor_for
    done = []

    def work():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass   # as inside a C extension's import
        batch = Batch(lambda shared, item, attempt: done.append(item), None, [1, 2], "two tasks")
        with executor_for(None, LocalExecutor()) as running:
            running.run(batch, lambda done, stored: None)
    assert run_job(work, print) == 130 and done == []


def test_a_later_job_in_this_process_starts_without_the_last_ones_stop(our_handlers):
    """Review: a notebook's second export stopped by itself at its first task after a
    Ctrl-C of the first; a job entering its executor forgets it."""
    from pipelines.running import executor_for
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:
        pass
    batch = Batch(lambda shared, item, attempt: item, None, [1, 2], "two tasks")
    with executor_for(None, LocalExecutor()) as running:
        assert running.run(batch, lambda done, stored: None) == [1, 2]
