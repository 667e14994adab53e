"""The commit protocol end to end: verify after a Spark export, and two export jobs
(separate processes) on one output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config import load_job
from tests.conftest import write_job
from tests.unit.commit.test_commit import load_verify_job


@pytest.mark.spark
def test_verify_finds_missing_changed_and_unexpected_objects(spark, tmp_path, capsys):
    import tifffile

    from pipelines.driver import export
    from pipelines.spark import SparkExecutor
    for n in range(2):  # a gap between the tiles gives recorded-empty chunks too
        tifffile.imwrite(tmp_path / f"t{n}.tif", np.full((8, 16, 16), 300 + n, "uint16"), contiguous=True)
    tiles = [{"index": n, "file": f"t{n}.tif", "position": [48 * n, 0, 0], "size": [16, 16, 8],
              "type": "GRAY16"} for n in range(2)]
    (tmp_path / "tiles.json").write_text(json.dumps(tiles))
    config = load_job(write_job(tmp_path / "job.toml", "tiles.json", "out"), ["output.block=[4,1,1]"])
    export(config, executor=SparkExecutor(spark=spark))
    verify_job = load_verify_job()
    assert verify_job.main([str(tmp_path / "out")]) == 0
    assert "4 objects checked (2 written, 2 empty), 0 problems" in capsys.readouterr().out
    (tmp_path / "out/c0/s0/0/0/0").write_bytes(b"garbage")         # changed
    (tmp_path / "out/c0/s0/3/0/0").unlink()                         # lost
    (tmp_path / "out/c0/s0/1/0").mkdir(parents=True)
    (tmp_path / "out/c0/s0/1/0/0").write_bytes(b"x")                 # should be empty
    assert verify_job.main([str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "c0/s0/0/0/0: size changed" in out and "c0/s0/3/0/0: missing" in out
    assert "c0/s0/1/0/0: recorded as empty" in out and "3 problems" in out


@pytest.mark.slow
def test_two_jobs_on_one_output_one_refuses(small_acquisition, tmp_path):
    """While a job writes, a second one on the same output stops with who holds it;
    the first finishes and its dataset is complete."""
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], "out")
    first = subprocess.Popen([sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set",
                              "debug.task_delay=0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while not list((tmp_path / "out.job").rglob("tasks/*.parquet")) and time.time() < deadline:
        assert first.poll() is None
        time.sleep(0.1)
    second = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert second.returncode == 2
    assert f"pid {first.pid}" in second.stderr and "being written by another job" in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert (tmp_path / "out/attributes.json").is_file() and not (tmp_path / "out.job.lock").exists()


def test_the_commit_refuses_a_recorded_object_that_vanished_and_a_rerun_restores_it(small_acquisition, tmp_path):
    """A store loses an object after its task recorded it (a restarted server, a
    clean-up): the commit lists the output, finds it missing and publishes nothing; the
    job record says failed, not committed. The same job run again computes it again and
    commits the bytes a clean run writes."""
    import io

    from pipelines.driver import export
    from pipelines.errors import RunFailed
    from pipelines.execute.executor import LocalExecutor
    from tests.pipeline_helpers import export_local

    class LosingStore(LocalExecutor):
        """Runs the tasks, then deletes one object they wrote."""

        def run(self, batch, on_progress):
            results = super().run(batch, on_progress)
            chunk = next(p for p in sorted(out.rglob("*")) if p.is_file() and p.name.isdigit())
            chunk.unlink()
            return results

    tiles = small_acquisition["paths"]["tiles_json"]
    out = tmp_path / "out" / "volume"
    config = load_job(write_job(tmp_path / "job.toml", tiles, str(out)))
    with pytest.raises(RunFailed, match=r"commit refused, nothing was published: 1 of \d+ recorded "
                                        r"objects are missing .* now missing"):
        export(config, LosingStore(), stream=io.StringIO())
    assert not (out / "attributes.json").exists() and not (out / "c0/s0/attributes.json").exists()
    record = json.loads((tmp_path / "out" / "volume.job.json").read_text())
    assert record["status"] == "failed"
    export_local(config)
    clean = tmp_path / "clean" / "volume"
    export_local(load_job(write_job(tmp_path / "clean.toml", tiles, str(clean))))
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert files == {p.relative_to(clean): p.read_bytes() for p in clean.rglob("*") if p.is_file()}
