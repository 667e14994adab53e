"""The driver's progress output: a redrawn bar on a terminal, plain lines in logs."""

from __future__ import annotations

import io

import pytest

from pipelines.config import load_job
from tests.conftest import write_job

pytestmark = pytest.mark.spark


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream_type", [Terminal, io.StringIO])
def test_progress_on_a_terminal_and_in_a_log(spark, small_acquisition, tmp_path, stream_type):
    from pipelines.driver import export
    from pipelines.report.progress import BAR_WIDTH
    from pipelines.spark import SparkExecutor
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out" / "v"), "[debug]\ntask_delay = 0.3")
    stream = stream_type()
    result = export(load_job(job), executor=SparkExecutor(executor=SparkExecutor(spark=spark)), stream=stream)
    text, total = stream.getvalue(), len(result.plan.tasks)
    final = f"blocks {total}/{total} (100%)"
    assert final in text and "MiB stored" in text and "MiB/s" in text
    if stream_type is Terminal:
        assert "\r[" + "#" * BAR_WIDTH + "] " + final in text    # the bar ends full
        assert "ETA" in text                                     # redrawn while running
    else:
        assert "\r" not in text and "#" not in text
        assert text.splitlines()[-1].startswith(final)
