"""Spark's Python daemon (`pyspark.daemon`), with workers that end quietly when their
executor closes the socket first.

Over Unix domain sockets (`session.PYTHON_SOCKETS`) a worker that writes after its
executor has let it go — a worker stopped after a minute of idling, one whose task
failed — meets the closed socket at once, and pyspark's daemon prints a BrokenPipeError
traceback for it, which on a job's console reads like a failure; over TCP the same
moment passes in silence. The executor already knows why it let the worker go (a failed
task is reported by Spark and by our one-line error), so here such a worker just exits.

Started by Spark as `python -m pipelines.spark.daemon` (`spark.python.daemon.module`);
only for sessions whose workers run this interpreter, where `pipelines` is importable
before any task has shipped code to them.
"""

from __future__ import annotations

from pyspark import daemon


def quiet_worker(original):
    """`original` (the daemon's per-worker function), ending the worker with code 1 when
    the executor's side of its socket is closed; the daemon then exits it with 0."""
    def worker(sock, authenticated):
        try:
            return original(sock, authenticated)
        except (BrokenPipeError, ConnectionResetError):
            return 1
    return worker


if __name__ == "__main__":
    # manager() looks `worker` up in its module on every turn of its loop
    daemon.worker = quiet_worker(daemon.worker)
    daemon.manager()
