"""The executor interface: what the driver needs from whatever runs its tasks.

The driver hands an executor a `Batch` (a module-level function, the data every task
shares, and one item per task) and gets the results back in item order. While the batch
runs, the executor reports progress through a callback `on_progress(done, nbytes)`: units
of work finished (tasks, or what `Batch.units` counts, such as blocks) and bytes stored
so far. Failures come back as one `BlockFailed` whose
message is one line and whose `detail` holds the full trace.

`LocalExecutor` runs the tasks in this process, one after another (tests, small jobs,
debugging with pdb). `pipelines.spark.SparkExecutor` runs them as Spark tasks.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pipelines.errors import BlockFailed, raise_if_stopped

Item = TypeVar("Item")
Result = TypeVar("Result")
ProgressCallback = Callable[[int, int], None]  # (units done, bytes stored so far)


@dataclass(frozen=True)
class Batch(Generic[Item, Result]):
    """One round of independent tasks: `function(shared, item, attempt)` for every item.

    `function`, `size` and `units` must be module-level functions (executors pickle
    them); `size(result)` is the bytes a result stored and `units(result)` the units of
    work it did (1 per task when None), for the progress line; `attempt` counts the
    executor's retries of a task (0 the first time)."""

    function: Callable[[Any, Item, int], Result]
    shared: Any
    items: Sequence[Item]
    description: str  # e.g. "compute and write 40 blocks", for the executor's own UI
    size: Callable[[Result], int] | None = None
    units: Callable[[Result], int] | None = None


class Executor(Protocol):
    """Runs batches of tasks; see the module docstring for the contract."""

    @property
    def master(self) -> str:
        """Where tasks run, for reports: "in-process", "local[2]", "spark://host:7077"."""
        ...

    def check(self) -> None:
        """Raise a PipelineError now if the executor cannot start (before anything is written)."""

    @property
    def startup_seconds(self) -> float:
        """What starting took, whichever call (`start`, or `run` starting it) did it."""
        ...

    def start(self) -> float:
        """Make ready to run tasks; the seconds that took (0 when already running)."""
        ...

    def run(self, batch: Batch[Item, Result], on_progress: ProgressCallback) -> list[Result]:
        """Every item's result, in item order; BlockFailed (one line) if a task failed."""
        ...

    def stop(self) -> None:
        """Release what `start` acquired."""


class LocalExecutor:
    """Runs every task in this process, in order: no start-up, no serialisation."""

    master = "in-process"
    startup_seconds = 0.0

    def check(self) -> None:
        pass

    def start(self) -> float:
        return 0.0

    def run(self, batch: Batch[Item, Result], on_progress: ProgressCallback) -> list[Result]:
        results: list[Result] = []
        stored = done = 0
        for item in batch.items:
            raise_if_stopped()   # a stop swallowed on its way (`errors._received`)
            results.append(_call(batch, item))
            stored += batch.size(results[-1]) if batch.size else 0
            done += batch.units(results[-1]) if batch.units else 1
            on_progress(done, stored)
        return results

    def stop(self) -> None:
        pass


def _call(batch: Batch[Item, Result], item: Item) -> Result:
    try:
        return batch.function(batch.shared, item, 0)
    except BlockFailed as e:
        raise failure(str(e), traceback.format_exc()) from None
    except Exception as e:
        raise_if_stopped()   # what a stop caused where it landed is the stop, not a failure
        raise failure(f"{type(e).__name__}: {e}", traceback.format_exc()) from None


def failure(line: str, detail: str) -> BlockFailed:
    """A BlockFailed carrying one line for the console and the full trace for the log."""
    error = BlockFailed(line)
    error.detail = detail
    return error

