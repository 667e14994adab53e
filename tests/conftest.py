"""Shared fixtures: one Spark session per test process (each pytest-xdist worker under
`make test`), small synthetic acquisitions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipelines.testing.synthetic import make_acquisition

pytest_plugins = ["tests.s3_fixtures"]  # moto server, buckets, flaky proxy

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """A test that takes the `spark` fixture is marked `spark`, so that `-m "not spark"`
    leaves it out without each one saying so (trial R: several were not marked)."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def spark():
    """A local[2] session shared by every Spark test (starting one takes ~10 s)."""
    from pyspark.sql import SparkSession

    from pipelines.spark.session import (
        DRIVER_JAVA_OPTIONS,
        PYTHON_SOCKETS,
        python_sockets_supported,
    )

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (SparkSession.builder.master("local[2]").appName("tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config(*DRIVER_JAVA_OPTIONS))   # as the jobs start it
    if python_sockets_supported():   # as the jobs start a local session
        for key, value in PYTHON_SOCKETS:
            builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def small_acquisition(tmp_path_factory) -> dict:
    """2 × 2 × 1 tiles of 64 × 48 × 16, no jitter, no falloff: fused output ≈ ground truth."""
    out = tmp_path_factory.mktemp("acq")
    return make_acquisition(out, grid=(2, 2, 1), tile=(64, 48, 16), overlap=0.2, jitter=0,
                            seed=7, falloff=0.0, noise=True)


def write_job(path: Path, tiles: str, uri: str, extra: str = "") -> Path:
    """A job file as a user writes it, with small chunks so a small volume has many blocks."""
    path.write_text(f"""
[input]
tiles = "{tiles}"
[output]
uri = "{uri}"
chunks = [16, 16, 8]
block = [2, 1, 2]
{extra}
[spark]
master = "local[2]"
""")
    return path
