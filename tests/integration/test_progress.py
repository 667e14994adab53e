"""The driver's progress output: a redrawn bar on a terminal, plain lines in logs."""

from __future__ import annotations

import io

import pytest

from pipelines.config import load_job
from pipelines.driver import export
from pipelines.execute.executor import LocalExecutor
from pipelines.report.progress import BAR_WIDTH
from tests.conftest import write_job


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def executor_named(name: str, request):
    """The executor under test: progress is fed by the executor, so both must draw it."""
    if name == "local":
        return LocalExecutor()
    from pipelines.spark import SparkExecutor
    return SparkExecutor(spark=request.getfixturevalue("spark"))


@pytest.mark.parametrize("executor", ["local", pytest.param("spark", marks=pytest.mark.spark)])
@pytest.mark.parametrize("stream_type", [Terminal, io.StringIO])
def test_progress_on_a_terminal_and_in_a_log(request, small_acquisition, tmp_path, stream_type,
                                             executor):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out" / "v"), "[debug]\ntask_delay = 0.3")
    stream = stream_type()
    result = export(load_job(job), executor=executor_named(executor, request), stream=stream)
    text, total = stream.getvalue(), result.plan.task_plan.blocks
    final = f"blocks {total}/{total} (100%)"
    assert final in text and "MiB stored" in text and "MiB/s" in text
    if stream_type is Terminal:
        assert "\r[" + "#" * BAR_WIDTH + "] " + final in text    # the bar ends full
        assert "ETA" in text                                     # redrawn while running
    else:
        assert "\r" not in text and "#" not in text
        assert text.splitlines()[-1].startswith(final)
