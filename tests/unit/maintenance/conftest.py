"""A committed dataset for the tests of tile-verify and tile-clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_job
from tests.conftest import write_job
from tests.pipeline_helpers import export_local


@pytest.fixture
def committed(tmp_path, small_acquisition) -> Path:
    """A committed n5-viewer dataset at tmp_path/out, its records beside it."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    export_local(load_job(job, []))
    return tmp_path / "out"
