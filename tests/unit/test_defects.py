"""The five defects issue 12 named, each pinned by a test that failed before its fix."""

from __future__ import annotations

import io
import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.commit.lock import read_lock, take_lock
from pipelines.commit.records import Sidecars, read_json
from pipelines.config import build_config, load_job
from pipelines.driver import export
from pipelines.errors import ConfigError, OutputError, RunFailed, run_job
from pipelines.execute.executor import LocalExecutor
from pipelines.maintenance.clean import find_orphans, remove_orphans
from pipelines.plan import make_plan
from pipelines.storage import LocalStore, beside_store
from tests.conftest import write_job
from tests.pipeline_helpers import export_local


def config_for(tmp_path, acquisition, *overrides):
    job = write_job(tmp_path / "job.toml", acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    return load_job(job, list(overrides))


# 1. clean --remove touched other datasets and ignored a live lock

def test_clean_removes_only_this_datasets_orphans(tmp_path, small_acquisition):
    export_local(config_for(tmp_path, small_acquisition))
    out = tmp_path / "out"
    ours = out / f"c0/s0/0/0/.0.{'1' * 32}.partial"     # a put's temporary name (uuid4 hex)
    ours.write_bytes(b"half a chunk")
    (tmp_path / f".out.job.json.{'2' * 32}.partial").write_bytes(b"half a record")   # ours, beside
    other = tmp_path / f"other/c0/s0/.0.{'3' * 32}.partial"   # a sibling dataset's running write
    other.parent.mkdir(parents=True)
    other.write_bytes(b"someone else's chunk")
    neighbour = tmp_path / f".other.job.json.{'4' * 32}.partial"   # a sibling's record being written
    neighbour.write_bytes(b"someone else's record")
    store, beside = LocalStore(out), beside_store(str(out))
    listed = [o.name for o in find_orphans(store, beside, str(out))]
    assert sorted(listed) == [f".out.job.json.{'2' * 32}.partial", f"c0/s0/0/0/.0.{'1' * 32}.partial"]
    assert remove_orphans(store, beside, str(out)) == 2
    assert not ours.exists() and other.exists() and neighbour.exists()


def test_clean_refuses_while_a_live_job_holds_the_lock(tmp_path, small_acquisition):
    out = tmp_path / "out"
    partial = out / f".0.{'6' * 32}.partial"
    out.mkdir()
    partial.write_bytes(b"being written right now")
    live = {"host": socket.gethostname(), "pid": os.getpid()}   # this process: alive
    (tmp_path / "out.job.lock").write_text(json.dumps(live))
    with pytest.raises(OutputError, match="a job has just started writing it"):   # no record yet
        remove_orphans(LocalStore(out), beside_store(str(out)), str(out))
    (tmp_path / "out.job.json").write_text(json.dumps({"status": "running", "fingerprint": "0" * 32}))
    with pytest.raises(OutputError, match="being written by another job"):
        remove_orphans(LocalStore(out), beside_store(str(out)), str(out))
    assert partial.exists()


# 2. the lock: created with its content, taken over once, never read as {}

def test_an_empty_or_damaged_lock_is_one_clear_error(tmp_path, small_acquisition):
    plan = make_plan(config_for(tmp_path, small_acquisition))
    beside = beside_store(plan.output.uri)
    (tmp_path / "out.job.lock").write_bytes(b"")   # what a crash between create and write left
    with pytest.raises(OutputError, match=r"out\.job\.lock is damaged"):
        take_lock(plan, beside)
    with pytest.raises(OutputError, match="damaged"):
        read_lock(beside, plan.output.uri)


def test_a_damaged_job_record_is_not_read_as_missing(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "out.job.json").write_text("{not json")
    with pytest.raises(OutputError, match=r"out\.job\.json is damaged"):
        read_json(store, "out.job.json")
    assert read_json(store, "missing.job.json") == {}


def test_a_dead_lock_is_taken_over_by_one_driver_only(tmp_path, small_acquisition):
    plan = make_plan(config_for(tmp_path, small_acquisition))
    beside, key = beside_store(plan.output.uri), Sidecars.of(plan.output.uri).lock
    dead = json.dumps({"host": socket.gethostname(), "pid": 2**22 + 4321}).encode()
    beside.put(key, dead)
    take_lock(plan, beside)                       # the first driver removes exactly that lock
    assert beside.get(key) != dead and json.loads(beside.get(key))["pid"] == os.getpid()
    # a second driver that read the dead lock before must not remove the new one
    assert not beside.delete_if_unchanged(key, dead)
    assert json.loads(beside.get(key))["pid"] == os.getpid()


def test_the_lock_file_appears_with_its_content(tmp_path, monkeypatch):
    """put_if_absent links a finished file: no moment exists where the key is empty."""
    store = LocalStore(tmp_path)
    seen = []
    real_link = os.link

    def watching_link(source, target, *args, **kwargs):
        seen.append(Path(source).read_bytes())
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", watching_link)
    assert store.put_if_absent("x.job.lock", b'{"pid": 1}')
    assert seen == [b'{"pid": 1}'] and (tmp_path / "x.job.lock").read_bytes() == b'{"pid": 1}'
    assert not store.put_if_absent("x.job.lock", b"other")


# 3. LocalStore.list walked every sibling dataset

def test_local_list_walks_only_below_the_prefix(tmp_path, monkeypatch):
    for name in ("volume.job/a/tasks/1.json", "sibling/c0/s0/0/0/0", "sibling/c0/s0/0/0/1"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    visited = []
    real_walk = os.walk

    def recording_walk(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            visited.append(os.path.relpath(entry[0], tmp_path))
            yield entry

    monkeypatch.setattr(os, "walk", recording_walk)
    assert list(LocalStore(tmp_path).list("volume.job/")) == ["volume.job/a/tasks/1.json"]
    assert not any(v.startswith("sibling") for v in visited), visited


# 4. a driver-side failure (a ledger that does not cover the plan) was a bare traceback

class DroppingExecutor(LocalExecutor):
    """Never runs the last task of a batch, as a broken executor might."""

    def run(self, batch, on_progress):
        return super().run(replace(batch, items=batch.items[:-1]), on_progress)


def test_a_failed_commit_check_is_one_line_exit_1_and_a_failed_record(tmp_path, small_acquisition):
    config = config_for(tmp_path, small_acquisition)
    with pytest.raises(RunFailed) as failure:
        export(config, DroppingExecutor(), stream=io.StringIO())
    message = str(failure.value)
    assert "\n" not in message and "blocks missing" in message and "no metadata was written" in message
    record = json.loads((tmp_path / "out.job.json").read_text())
    assert record["status"] == "failed" and "blocks missing" in record["error"]
    assert not (tmp_path / "out/attributes.json").exists()
    assert not (tmp_path / "out.job.lock").exists()

    def work():
        raise failure.value

    assert run_job(work, print) == 1


def test_a_file_system_error_that_reaches_the_job_is_one_line_exit_1(capsys):
    """Trial O: a disk that filled beside the tile JSONs while registration wrote its
    results ended in a traceback; the error (which names the file) is one line."""
    import errno

    def work():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/t2d")
    assert run_job(work, print) == 1
    assert capsys.readouterr().err == ("failed: OSError: [Errno 28] No space left on device: "
                                       "'/data/t2d'\n")


# 5. memory:// was accepted as an output and "committed" into nothing

def test_memory_uri_is_refused_as_an_output():
    raw = {"input": {"tiles": "tiles.json"}, "output": {"uri": "memory://x/volume"}}
    with pytest.raises(ConfigError, match=r"output\.uri: .*unsupported storage scheme 'memory'"):
        build_config(raw)


def test_a_missing_dependency_is_one_line_not_a_traceback(capsys):
    """Review: the job scripts' guard cannot see a dependency imported only where the work
    needs it; the work's own ModuleNotFoundError is one line, exit 2."""
    def work():
        import a_module_nobody_installed  # noqa: F401
    assert run_job(work, print) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: this Python cannot import 'a_module_nobody_installed', which "
                          "this project needs") and "Traceback" not in err, err

    def ours():   # a module of ours missing is a bug, or a stale zip: its traceback, not advice
        import pipelines.no_such_module  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        run_job(ours, print)
