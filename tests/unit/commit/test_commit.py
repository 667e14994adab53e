"""The commit protocol: the ledger must match the plan, metadata goes last (root last),
and an output holding anything but an unfinished run of the same job is refused.
(verify after a Spark export and two jobs on one output: tests/integration/test_commit.py)"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.commit import ledger
from pipelines.commit.output import check_output
from pipelines.commit.publish import commit
from pipelines.commit.records import start_record
from pipelines.config import load_job
from pipelines.driver import export
from pipelines.errors import BlockFailed, OutputError
from pipelines.execute.block import run_partition
from pipelines.execute.executor import LocalExecutor
from pipelines.plan import make_plan
from pipelines.report.console import export_report
from pipelines.storage import LocalStore, MemoryStore, beside_store
from pipelines.testing.synthetic import make_acquisition
from tests.conftest import write_job
from tests.pipeline_helpers import export_local
from tests.readers import tensorstore_read


class RecordingStore(MemoryStore):
    """A memory store that remembers the order of puts."""

    def __init__(self):
        super().__init__("recording")
        self.order: list[str] = []

    def put(self, key, data):
        self.order.append(key)
        super().put(key, data)


def run_all(plan, store, beside, skip=0):
    """Run every partition, stage by stage, recording in the plan's ledger (but the first
    `skip` partitions of stage 0), as the driver would."""
    base = ledger.folder(plan)
    for n, stage in enumerate(plan.task_plan.stages):
        for t in range(plan.task_plan.timepoints):
            for k, part in enumerate(stage.partitions(t)):
                run_partition(part, plan, store, None if n == 0 and k < skip else beside, base)


def config_for(tmp_path, acquisition, *overrides):
    job = write_job(tmp_path / "job.toml", acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    return load_job(job, list(overrides))


@pytest.mark.parametrize("fmt", ["n5", "zarr2", "zarr3"])
def test_metadata_is_written_after_every_chunk_arrays_first_root_last(tmp_path, small_acquisition, fmt):
    config = config_for(tmp_path, small_acquisition, f"output.format={fmt}", "output.levels=2")
    plan = make_plan(config)
    store, beside = RecordingStore(), MemoryStore("beside")
    run_all(plan, store, beside)
    chunks = len(store.order)
    commit(plan, store, beside)
    metadata = store.order[chunks:]
    names = ("attributes.json", ".zarray", ".zattrs", ".zgroup", "zarr.json")
    assert not [k for k in store.order[:chunks] if k.rsplit("/", 1)[-1] in names]
    root = {"n5": "attributes.json", "zarr2": ".zgroup", "zarr3": "zarr.json"}[fmt]
    assert metadata[-1] == root
    arrays = [k for k in metadata if k.rsplit("/", 1)[-1] in (".zarray", "zarr.json", "attributes.json")
              and "/" in k and k.split("/")[0] in ("0", "1", "c0")]
    assert metadata.index(arrays[-1]) < min(metadata.index(k) for k in metadata if k not in arrays)
    assert json.loads(beside.get("out.job.json"))["status"] == "committed"


@pytest.mark.parametrize("per_task", [1, 4])
def test_a_ledger_that_does_not_cover_the_plan_commits_nothing(tmp_path, small_acquisition, per_task):
    plan = make_plan(config_for(tmp_path, small_acquisition, f"spark.blocks_per_task={per_task}"))
    store, beside = MemoryStore(), MemoryStore("beside")
    run_all(plan, store, beside, skip=1)   # one task never recorded its blocks
    before = dict(store.objects)
    missing = plan.tasks_of(0).partition(0, 0).blocks
    with pytest.raises(RuntimeError, match=f"{missing} of {plan.task_plan.blocks} blocks missing"):
        commit(plan, store, beside)
    assert store.objects == before  # no metadata appeared
    store, beside = MemoryStore(), MemoryStore("beside")
    run_all(plan, store, beside)
    part = next(iter(beside.list(f"{ledger.folder(plan)}/{ledger.PARTS}/")))
    table = pq.read_table(io.BytesIO(beside.get(part)))
    buffer = io.BytesIO()
    pq.write_table(table.slice(1), buffer)   # a part that lost one object's row
    beside.put(part, buffer.getvalue())
    before = dict(store.objects)
    with pytest.raises(RuntimeError, match="objects but the plan's blocks own"):
        commit(plan, store, beside)
    assert store.objects == before


def test_a_task_run_twice_is_counted_once(tmp_path, small_acquisition):
    """A retried or speculative task records its blocks again, in parts of its own: the
    ledger drops the repeats, and the commit goes through."""
    plan = make_plan(config_for(tmp_path, small_acquisition, "spark.blocks_per_task=4"))
    store, beside = MemoryStore(), MemoryStore("beside")
    run_all(plan, store, beside)
    once = ledger.read_parts(beside, ledger.folder(plan))
    run_partition(plan.tasks_of(0).partition(0, 0), plan, store, beside, ledger.folder(plan), attempt=1)
    twice = ledger.read_parts(beside, ledger.folder(plan))
    assert len(list(beside.list(f"{ledger.folder(plan)}/{ledger.PARTS}/"))) == len(once.finished) + 1
    assert twice.block_count == once.block_count == plan.task_plan.blocks
    assert sorted(twice.objects["key"].to_pylist()) == sorted(once.objects["key"].to_pylist())
    assert commit(plan, store, beside).blocks == plan.task_plan.blocks


def test_unrelated_files_in_the_output_are_refused(tmp_path, small_acquisition):
    config = config_for(tmp_path, small_acquisition)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("someone's data")
    with pytest.raises(OutputError, match="files that are not from this job"):
        check_output(make_plan(config), LocalStore(tmp_path / "out"), beside_store(str(tmp_path / "out")))


def test_array_metadata_alone_counts_as_committed(tmp_path, small_acquisition):
    config = config_for(tmp_path, small_acquisition)
    (tmp_path / "out/c0/s0").mkdir(parents=True)
    (tmp_path / "out/c0/s0/attributes.json").write_text("{}")
    with pytest.raises(OutputError, match=r"already holds a dataset that no job record of this pipeline vouches for "
                                          r"\(c0/s0/attributes.json; no out.job.json"):
        check_output(make_plan(config), LocalStore(tmp_path / "out"), beside_store(str(tmp_path / "out")))


def test_an_unfinished_commit_is_resumed_by_its_own_job_only(tmp_path, small_acquisition):
    """Metadata in the output with a job record whose commit began but did not finish:
    the same job continues it (a rerun); a job with other settings is refused, and nothing
    is deleted. (The real kill between two metadata writes:
    tests/integration/test_interrupted_commit.py)"""
    config = config_for(tmp_path, small_acquisition, "output.levels=2")
    export_local(config)
    record_file = tmp_path / "out.job.json"
    record = json.loads(record_file.read_text())
    assert set(record["metadata"]["container"]) >= {"attributes.json", "c0/s0/attributes.json"}
    record_file.write_text(json.dumps({**record, "status": "committing"}))
    out, before = tmp_path / "out", sorted((tmp_path / "out").rglob("*"))
    assert check_output(make_plan(config), LocalStore(out), beside_store(str(out))).rerun
    other = config_for(tmp_path, small_acquisition, "output.levels=2", "output.codec=gzip")
    with pytest.raises(OutputError, match=r"holds an unfinished commit of a job with other settings"):
        check_output(make_plan(other), LocalStore(out), beside_store(str(out)))
    assert sorted(out.rglob("*")) == before


@pytest.mark.parametrize("work_first", [["stitching.enabled=true"], ['fusion.intensity="match"']])
def test_an_unfinished_commit_of_a_job_that_stitches_or_matches_first_is_finished_by_a_rerun(
        tmp_path, work_first):
    """Defect: a job that registers tiles or matches intensities before its export, killed
    during its commit, could not be finished: the check made before that work compared
    the job record with a plan of the stage positions (or no coefficients), and refused
    with "an unfinished commit of a job with other settings; run that job again to finish
    it" — the same job, run again. Now the check under the lock, with the plan as
    exported, decides; an unfinished commit of other output settings or other tile files
    is still refused before any work (review F2), nothing deleted."""
    acq = make_acquisition(tmp_path / "acq", grid=(2, 2, 1), tile=(64, 48, 16), overlap=0.2,
                           jitter=3, seed=7, falloff=0.0, noise=True)
    (tmp_path / "run").mkdir()
    config = config_for(tmp_path / "run", acq, *work_first)
    export_local(config)
    record_file = tmp_path / "run/out.job.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "status": "committing"}))
    out = tmp_path / "run/out"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    class NoWork(LocalExecutor):
        def run(self, batch, on_progress):
            raise AssertionError(f"no executor work may start ({batch.description})")

    # another codec: known before any work, refused there (review F2)
    other = config_for(tmp_path / "run", acq, *work_first, "output.codec=gzip")
    with pytest.raises(OutputError, match=r"holds an unfinished commit of a job with other settings"):
        export(other, NoWork(), stream=io.StringIO())
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    result = export_local(config)
    assert result.plan.rerun and json.loads(record_file.read_text())["status"] == "committed"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # once a tile file changed, the commit is not this job's to finish: that is known
    # before any registration or matching work, and refused there
    record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "status": "committing"}))
    tile = next((tmp_path / "acq").rglob("*.tif"))
    os.utime(tile, ns=(tile.stat().st_atime_ns, tile.stat().st_mtime_ns + 10**9))
    with pytest.raises(OutputError, match="unfinished commit of this job made before its tile files changed"):
        export(config, NoWork(), stream=io.StringIO())
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def failed_run(tmp_path, acquisition, *overrides):
    fail = [] if any(o.startswith("debug.fail_blocks") for o in overrides) else ["debug.fail_blocks=[[1, 0, 0]]"]
    config = config_for(tmp_path, acquisition, *fail, *overrides)
    with pytest.raises(BlockFailed):
        export_local(config)
    assert list((tmp_path / "out").rglob("*")), "the failed run left chunks behind"


# a failed run that recorded every block of small_acquisition's 24 but the last
RECORDING_ALL_BUT_THE_LAST = ("debug.fail_blocks=[[3, 5, 0]]", "limits.checkpoint_seconds=0")


def test_rerun_of_the_same_job_after_a_failure_completes_and_equals_a_clean_run(tmp_path, small_acquisition):
    (tmp_path / "clean").mkdir()
    clean = config_for(tmp_path / "clean", small_acquisition)
    export_local(clean)
    failed_run(tmp_path, small_acquisition)
    error_log = tmp_path / "out.error.log"
    assert error_log.is_file()
    plan = export_local(config_for(tmp_path, small_acquisition)).plan
    assert plan.rerun
    assert not error_log.exists(), "the failed run's trace outlived the commit (trial J)"
    for path in (tmp_path / "clean/out").rglob("*"):
        if path.is_file():
            assert (tmp_path / "out" / path.relative_to(tmp_path / "clean/out")).read_bytes() == path.read_bytes()


def test_a_rerun_skips_the_blocks_a_cut_short_task_recorded(tmp_path, small_acquisition):
    """A task of 8 blocks fails at its 4th block after recording the first three (a part
    per block: checkpoint_seconds = 0); the rerun runs only the other blocks."""
    sets = ("spark.blocks_per_task=8", "limits.checkpoint_seconds=0", "output.levels=2")
    plan = make_plan(config_for(tmp_path, small_acquisition, *sets))
    part = plan.tasks_of(0).partition(0, 0)
    fourth = part.block_tasks()[3].index
    (tmp_path / "clean").mkdir()
    export_local(config_for(tmp_path / "clean", small_acquisition, *sets))
    failed_run(tmp_path, small_acquisition, *sets, f"debug.fail_blocks=[{list(fourth)}]")
    recorded = ledger.read_parts(beside_store(str(tmp_path / "out")), ledger.folder(plan))
    assert recorded.blocks[(0, 0)].tolist() == sorted(list(t.index) for t in part.block_tasks()[:3])
    stream = io.StringIO()
    result = export(config_for(tmp_path, small_acquisition, *sets), LocalExecutor(), stream=stream)
    left = plan.tasks_of(0).blocks - 3   # stage 0 runs only the blocks not recorded
    assert result.resumed == 3 and f"resuming: 3 of {plan.task_plan.blocks} blocks" in stream.getvalue()
    assert f"stage 1/2: level 0\nblocks {left}/{left} (100%)" in stream.getvalue()   # one level: "level"
    assert result.summary.blocks == plan.task_plan.blocks
    # the summary tells what this run computed; a throughput over the whole volume would
    # count the earlier run's blocks in this run's time (a user's trial: 37.5 against 10 MiB/s)
    time_line = next(line for line in export_report(result).splitlines() if line.startswith("time:"))
    objects_line = next(line for line in export_report(result).splitlines() if line.startswith("objects:"))
    assert f"{result.summary.objects_written} written (by this run and the earlier one it " \
           "resumed)" in objects_line   # trial X: read as this run's count
    assert f"for the {plan.task_plan.blocks - 3} of {plan.task_plan.blocks} blocks left (3 " \
           "recorded by an earlier run)" in time_line and "MiB/s" not in time_line.replace("no MiB/s", "")
    for path in (tmp_path / "clean/out").rglob("*"):
        if path.is_file():
            assert (tmp_path / "out" / path.relative_to(tmp_path / "clean/out")).read_bytes() == path.read_bytes()


def test_a_rerun_with_other_fields_says_the_fields_differ(tmp_path, small_acquisition):
    """Trial J: fields estimated again between a failed run and its rerun discarded the
    recorded blocks as "an unfinished run with other settings", though no setting had
    changed."""
    from pipelines.illumination.estimate import Fields
    from pipelines.illumination.fields import write_fields

    def fields(gain: float) -> list:
        return [f"fusion.flatfield={json.dumps(str(tmp_path / 'fields'))}"] if write_fields(
            str(tmp_path / "fields"), Fields(np.full((48, 64), gain, np.float32),
                                             np.zeros((48, 64), np.float32)), {}) else []

    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST, *fields(1.0))
    stream = io.StringIO()
    export(config_for(tmp_path, small_acquisition, *fields(0.9)), LocalExecutor(), stream=stream)
    assert ("discarding an unfinished run with other flatfield fields or intensity coefficients "
            "(23 of 24 blocks were recorded)") in stream.getvalue(), stream.getvalue()


def test_rerun_with_other_settings_discards_the_unfinished_run(tmp_path, small_acquisition):
    """...and says so in one line, with how much of it was done (it was silent)."""
    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST)  # chunks [16, 16, 8]
    stream = io.StringIO()
    plan = export(config_for(tmp_path, small_acquisition, "output.chunks=[32, 16, 8]"),
                  LocalExecutor(), stream=stream).plan
    assert not plan.rerun
    assert ("discarding an unfinished run with other settings (23 of 24 blocks were "
            "recorded); every block is computed again\n") in stream.getvalue()
    (tmp_path / "clean").mkdir()
    export_local(config_for(tmp_path / "clean", small_acquisition, "output.chunks=[32, 16, 8]"))
    ours = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file())
    clean = sorted(p.relative_to(tmp_path / "clean/out") for p in (tmp_path / "clean/out").rglob("*") if p.is_file())
    assert ours == clean  # nothing of the old chunking is left behind


def test_rerun_clears_objects_that_became_empty(tmp_path):
    """A chunk an earlier attempt stored (say, before a tile file was fixed in place) must
    not survive a rerun of the same job where that chunk is now empty."""
    import tifffile
    for n in range(2):  # two tiles with a gap along x: chunks 1 and 2 are empty
        tifffile.imwrite(tmp_path / f"t{n}.tif", np.full((8, 16, 16), 500, "uint16"), contiguous=True)
    tiles = [{"index": n, "file": f"t{n}.tif", "position": [48 * n, 0, 0], "size": [16, 16, 8],
              "type": "GRAY16"} for n in range(2)]
    (tmp_path / "tiles.json").write_text(json.dumps(tiles))
    config = load_job(write_job(tmp_path / "job.toml", "tiles.json", "out"), ["output.block=[4,1,1]"])
    plan = make_plan(config)
    store, beside = LocalStore(tmp_path / "out"), beside_store(str(tmp_path / "out"))
    start_record(plan, beside)  # the earlier attempt of this same job
    from pipelines.formats import n5
    stale = n5.chunk_key(plan.array, (1, 0, 0))
    store.put(stale, n5.encode_chunk(plan.array, np.full((8, 16, 16), 9, "uint16")))
    plan = export_local(config).plan
    assert plan.rerun and not store.exists(stale)
    assert (tensorstore_read(str(tmp_path / "out"), "c0/s0", "n5")[:, :, 16:48] == 0).all()


def load_verify_job():
    import importlib.util

    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location("verify_job", ROOT / "jobs/verify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_lock_left_by_a_dead_driver_here_is_taken_over(tmp_path, small_acquisition):
    import socket

    from pipelines.commit.lock import release_lock, take_lock
    from pipelines.commit.records import Sidecars
    plan = make_plan(config_for(tmp_path, small_acquisition))
    beside = beside_store(str(tmp_path / "out"))
    dead = {"job": "x", "host": socket.gethostname(), "pid": 2**22 + 12345, "since": 0}
    beside.put(Sidecars.of(plan.output.uri).lock, json.dumps(dead).encode())
    locked = take_lock(plan, beside)  # no error: that pid does not run
    assert json.loads(beside.get(Sidecars.of(plan.output.uri).lock))["pid"] != dead["pid"]
    alive = {**dead, "pid": 1}
    release_lock(locked, beside)
    beside.put(Sidecars.of(plan.output.uri).lock, json.dumps(alive).encode())
    with pytest.raises(OutputError, match="being written by another job"):
        take_lock(plan, beside)


def test_a_lock_holder_is_judged_by_its_pid_only_in_this_pid_namespace_and_boot():
    """Trial AV: a run in another PID namespace with this host name (a container with the
    host's network) took the output of a live run over, its pid not running here; a driver
    killed but not yet reaped (a zombie) held its output for a moment after a `kill -9`."""
    import socket
    import subprocess
    import time

    from pipelines.commit.lock import _boot_id, _pid_namespace, lock_holder_dead
    here = {"host": socket.gethostname(), "pid": 2**22 + 12345}   # a pid that does not run
    assert lock_holder_dead(here)                                  # an earlier version's lock
    assert lock_holder_dead({**here, "pid_namespace": _pid_namespace(), "boot": _boot_id()})
    assert not lock_holder_dead({**here, "pid_namespace": "pid:[1]", "boot": _boot_id()})
    # from before this machine booted: dead, whatever runs under its pid (and namespace);
    # of another boot since (a twin host of the same name: review RV11), not judged dead
    assert lock_holder_dead({**here, "pid": os.getpid(), "pid_namespace": "pid:[1]",
                             "boot": "an-earlier-boot", "since": 0})
    # a twin host's live lock (review RV12): its first PID namespace has our id, and its
    # pid does not run here
    assert not lock_holder_dead({**here, "pid_namespace": _pid_namespace(),
                                 "boot": "a-twin-hosts-boot", "since": time.time()})
    assert not lock_holder_dead({**here, "pid": os.getpid()})
    child = subprocess.Popen(["true"])
    try:
        for _ in range(500):   # exited, not reaped
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert lock_holder_dead({**here, "pid": child.pid})
    finally:
        child.wait()


def test_releasing_the_lock_needs_no_conditional_delete_and_spares_another_runs(tmp_path,
                                                                                small_acquisition):
    """Review H: release used a conditional delete, which some S3 stores refuse, after a
    commit; it reads the holder and deletes plainly, and only its own lock."""
    from pipelines.commit.lock import release_lock, take_lock
    from pipelines.commit.records import Sidecars

    class NoConditions(MemoryStore):
        def delete_if_unchanged(self, key, expected):
            raise NotImplementedError("501 Not Implemented")
    plan = make_plan(config_for(tmp_path, small_acquisition))
    beside, key = NoConditions("beside"), Sidecars.of(plan.output.uri).lock
    locked = take_lock(plan, beside)
    release_lock(locked, beside)
    assert not beside.exists(key)
    others = json.dumps({"job": "x", "host": "elsewhere", "pid": 1, "since": 0}).encode()
    beside.put(key, others)
    release_lock(locked, beside)
    assert beside.get(key) == others
    # review RV12: by the lock's id, not pid and host: a driver of this pid on a twin host
    # or in another PID namespace holds a lock that is not ours
    import os
    import socket
    twin = json.dumps({"job": "twin", "host": socket.gethostname(), "pid": os.getpid()}).encode()
    beside.put(key, twin)
    release_lock(locked, beside)
    assert beside.get(key) == twin
    beside.put(key, json.dumps({"job": locked.lock, "host": "h", "pid": 1}).encode())
    release_lock(locked, beside)
    assert not beside.exists(key)


def test_clean_lists_and_removes_what_a_killed_run_left(tmp_path, small_acquisition, capsys):
    import importlib.util
    import socket

    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location("clean_job", ROOT / "jobs/clean.py")
    clean_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clean_job)
    export_local(config_for(tmp_path, small_acquisition))
    out = tmp_path / "out"
    partial = f".0.{'5' * 32}.partial"                                      # a put's temporary name
    (out / "c0/s0/0/0" / partial).write_bytes(b"half a chunk")              # killed writer
    record = json.loads((tmp_path / "out.job.json").read_text())
    stale = tmp_path / f"out.job/{record['fingerprint']}/tasks/0-0-9-9-9.0123456789ab.0.parquet"
    assert not stale.parent.exists()   # the commit's compaction left no empty tasks/ (trial X)
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")                                                   # never compacted
    (tmp_path / "out.job.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 4321}))
    before = {p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".partial")}
    assert clean_job.main([str(out)]) == 0
    listing = capsys.readouterr().out
    assert partial in listing and "0-0-9-9-9.0123456789ab.0.parquet" in listing and "out.job.lock" in listing
    assert "3 orphans" in listing
    assert clean_job.main([str(out), "--remove"]) == 0
    assert "removed 3 orphans" in capsys.readouterr().out
    assert not stale.exists() and not (tmp_path / "out.job.lock").exists()
    assert {p for p in out.rglob("*") if p.is_file()} == before              # the dataset is untouched
    assert (tmp_path / f"out.job/{record['fingerprint']}/objects.parquet").exists()
    assert clean_job.main([str(out)]) == 0 and "0 orphans" in capsys.readouterr().out


@pytest.mark.parametrize("overrides", [["output.format=zarr3", "output.shard=[2,1,2]", "output.levels=2"],
                                       ["output.format=zarr2", "output.codec=gzip"]])
def test_verify_decodes_every_object_of_a_clean_dataset(tmp_path, small_acquisition, overrides):
    from pipelines.maintenance.verify import verify
    export_local(config_for(tmp_path, small_acquisition, *overrides))
    out = tmp_path / "out"
    result = verify(LocalStore(out), beside_store(str(out)), str(out))
    assert result.ok and result.written > 0, result.problems


def test_a_signal_after_the_commit_says_the_dataset_is_complete(tmp_path, small_acquisition, monkeypatch):
    """Ctrl-C while the run report is drawn (or Spark stops) came after the commit but said
    'interrupted … before the run started; nothing was written'."""
    from pipelines import driver
    from pipelines.errors import Interrupted, run_job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(driver, "_report", interrupted)
    config = load_job(write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                                str(tmp_path / "out")))
    with pytest.raises(Interrupted, match=f"after the commit: the dataset at {tmp_path / 'out'} is complete"):
        export_local(config)
    assert json.loads((tmp_path / "out.job.json").read_text())["status"] == "committed"
    assert tensorstore_read(str(tmp_path / "out"), "c0/s0", "n5").any()
    again = load_job(write_job(tmp_path / "again.toml", small_acquisition["paths"]["tiles_json"],
                               str(tmp_path / "again")))
    assert run_job(lambda: export_local(again), print) == 130   # as the command exits


def test_a_run_stopped_before_it_wrote_anything_leaves_no_folders(tmp_path, small_acquisition,
                                                                  monkeypatch):
    """Ctrl-C in the first seconds said 'nothing was written' but left the output's new
    parent folders, made for the lock (trial M). Folders that were there stay."""
    from pipelines import driver
    from pipelines.errors import Terminated

    def interrupted(*args, **kwargs):
        raise Terminated()
    monkeypatch.setattr(driver, "_export_locked", interrupted)
    (tmp_path / "there").mkdir()
    config = load_job(write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                                str(tmp_path / "there" / "new" / "er" / "volume.n5")))
    with pytest.raises(Terminated):
        export_local(config)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["there"]
    assert not list((tmp_path / "there").iterdir())


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "Terminated"])
def test_a_signal_once_the_record_says_committed_leaves_it_committed(small_acquisition, tmp_path,
                                                                      monkeypatch, capsys, stop):
    """Trial M: a signal while the ledger was compacted (the record already committed)
    rewrote the record 'interrupted' and said to resume; verify then failed a complete
    dataset. It stays committed, the line says so, and verify passes (the ledger read
    from its parts until tile-clean compacts them)."""
    from pipelines.cli.verify import main as verify_main
    from pipelines.errors import Interrupted, Terminated
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))

    def signal_arrives(*args, **kwargs):
        raise KeyboardInterrupt() if stop == "KeyboardInterrupt" else Terminated()
    monkeypatch.setattr(ledger, "compact", signal_arrives)
    with pytest.raises(Interrupted, match=rf"^interrupted by SIG(INT|TERM) after the commit: the "
                                          rf"dataset at {tmp_path / 'out'} is complete"):
        export(load_job(job), LocalExecutor(), stream=io.StringIO())
    assert json.loads((tmp_path / "out.job.json").read_text())["status"] == "committed"
    monkeypatch.undo()
    capsys.readouterr()
    assert verify_main([str(tmp_path / "out")]) == 0, capsys.readouterr()


def test_a_job_record_removed_during_the_run_is_written_whole_again(small_acquisition, tmp_path,
                                                                      monkeypatch, capsys):
    """Trial M: the record removed by hand while the run went on came back as a stub of
    the commit's fields (no `format`), and verify failed with a KeyError traceback."""
    import pipelines.driver as driver
    from pipelines.cli.verify import main as verify_main
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    run_stages = driver._run_stages

    def then_removed(plan, store, beside, executor, stream):
        done = run_stages(plan, store, beside, executor, stream)
        (tmp_path / "out.job.json").unlink()
        return done
    monkeypatch.setattr(driver, "_run_stages", then_removed)
    export(load_job(job), LocalExecutor(), stream=io.StringIO())
    record = json.loads((tmp_path / "out.job.json").read_text())
    assert record["status"] == "committed" and {"format", "arrays", "fingerprint_parts"} <= set(record)
    capsys.readouterr()
    assert verify_main([str(tmp_path / "out")]) == 0, capsys.readouterr()


def test_a_run_whose_output_another_run_took_over_leaves_that_run_alone(small_acquisition,
                                                                         tmp_path, monkeypatch):
    """Trial M: its lock removed by hand, a run's output was taken over by another that
    committed; the first then failed, marked the other's committed record failed, wrote
    its error log beside it and said no metadata was written. It now stops saying another
    run took over, and leaves that run's record and lock as they are."""
    import pipelines.driver as driver
    from pipelines.errors import RecordTaken
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    run_stages = driver._run_stages
    others = {"job": "another run", "status": "committed", "format": "zarr3"}
    lock = json.dumps({"job": "x", "host": "elsewhere", "pid": 1, "since": 0, "fingerprint": "f"})

    def then_taken_over(plan, store, beside, executor, stream):
        done = run_stages(plan, store, beside, executor, stream)
        (tmp_path / "out.job.json").write_text(json.dumps(others))
        (tmp_path / "out.job.lock").write_text(lock)
        return done
    monkeypatch.setattr(driver, "_run_stages", then_taken_over)
    here = tmp_path / "here"   # where the command runs: the trace is kept there
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(RecordTaken) as stopped:
        export(load_job(job), LocalExecutor(), stream=io.StringIO())
    said = str(stopped.value)
    assert said.startswith(f"another run took over {tmp_path / 'out'} while this one went on")
    assert said.count("another run took over") == 1, said   # review H: it said it twice
    trace, = here.glob("out.error-*.log")
    assert f"the full trace is in {trace}" in said
    assert json.loads((tmp_path / "out.job.json").read_text()) == others
    assert (tmp_path / "out.job.lock").read_text() == lock
    assert not (tmp_path / "out.error.log").exists()


@pytest.mark.parametrize("replaced", ["lock", "lock and record", "record", "neither"])
def test_a_run_whose_output_is_taken_over_mid_run_starts_no_more_tasks(small_acquisition,
                                                                        tmp_path, replaced):
    """Trial AV: its lock removed while it went on, a run wrote every remaining block into
    the dataset of the run that took over, which committed some of them (same size: its
    check passed), exit 0. A task now starts only while the lock is its run's, or, the
    lock gone, the record (review RV11: the other run's lock comes seconds before its
    record; a run that took over and ended has released its lock)."""
    from pipelines.errors import RecordTaken

    def files_under(folder):
        return {p for p in folder.rglob("*") if p.is_file()}
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))
    others = {"job": "another run", "status": "running", "format": "zarr3"}
    lock = {"job": "another run", "host": "elsewhere", "pid": 1, "since": 0, "fingerprint": "f"}
    written: list[set] = []

    class TakenOverAfterTheFirstTask(LocalExecutor):
        def run(self, batch, on_progress):
            def progress(finished, stored):
                done.append(finished)
                if not written:
                    written.append(files_under(tmp_path / "out"))
                    if "record" in replaced:
                        (tmp_path / "out.job.json").write_text(json.dumps(others))
                    if "lock" in replaced:
                        (tmp_path / "out.job.lock").write_text(json.dumps(lock))
                    else:
                        (tmp_path / "out.job.lock").unlink()
                on_progress(finished, stored)
            return super().run(batch, progress)

    done: list[int] = []
    config = load_job(job, ["output.block=[1,1,1]", "spark.blocks_per_task=1"])
    if replaced == "neither":   # the lock removed by hand, no other run yet: stops too
        with pytest.raises(BlockFailed, match="out.job.lock was removed or damaged while the "
                                              "run went on") as stopped:
            export(config, TakenOverAfterTheFirstTask(), stream=io.StringIO())
    else:
        with pytest.raises(RecordTaken) as stopped:
            export(config, TakenOverAfterTheFirstTask(), stream=io.StringIO())
        assert str(stopped.value).count("another run took over") == 1, stopped.value
        assert "check its dataset with tile-verify" in str(stopped.value)
    assert done[-1] >= 1 and files_under(tmp_path / "out") == written[0], "a task ran after it"
    if replaced == "neither":   # the rerun resumes
        assert export(config, LocalExecutor(), stream=io.StringIO()).resumed >= 1
    elif "record" in replaced:
        assert json.loads((tmp_path / "out.job.json").read_text()) == others
    else:   # a record of its own still, which the lock's holder will write over
        assert json.loads((tmp_path / "out.job.json").read_text())["status"] == "running"


def test_a_task_under_way_stops_at_its_next_block_once_taken_over(small_acquisition, tmp_path,
                                                                  monkeypatch):
    """Trial AX: a task under way at the takeover wrote its remaining blocks (54 chunks
    of the other run's committed dataset, a minute after the takeover). A task looks at
    the lock every `OWNER_CHECK_SECONDS` between blocks (0 here: at every block)."""
    import pipelines.execute.block as block
    from pipelines.errors import RecordTaken
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))
    lock = {"job": "another run", "host": "elsewhere", "pid": 1, "since": 0, "fingerprint": "f"}
    ran = []
    run_block = block.run_block

    def then_taken_over(*args, **kwargs):
        receipt = run_block(*args, **kwargs)
        ran.append(receipt)
        if len(ran) == 2:
            (tmp_path / "out.job.lock").write_text(json.dumps(lock))
        return receipt
    monkeypatch.setattr(block, "run_block", then_taken_over)
    monkeypatch.setattr(block, "OWNER_CHECK_SECONDS", 0.0)
    config = load_job(job, ["output.block=[1,1,1]", "spark.blocks_per_task=64"])
    with pytest.raises(RecordTaken, match="another run took over"):
        export(config, LocalExecutor(), stream=io.StringIO())
    assert len(ran) == 2, f"{len(ran)} blocks ran, 2 before the takeover"


@pytest.mark.parametrize(("stray", "when"), [
    ("c0/s0/user-notes.txt", "start"), ("notes.txt", "start"),
    ("c0/s0/9/9/9", "commit"),   # named as a chunk of ours, but no block wrote it
])
def test_a_resume_does_not_commit_over_a_file_this_job_did_not_write(tmp_path, small_acquisition,
                                                                     stray, when):
    """Trial U: a file a user put into the container of an unfinished run was committed
    with the dataset, which tile-verify then failed. A name none of ours has is refused
    before the resume computes anything (review K: it was found only by the commit); one
    named like ours but written by no block is refused by the commit, publishing nothing.
    Once it is moved out, the next run goes on (and commits)."""
    from pipelines.maintenance.verify import verify
    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST)
    out = tmp_path / "out"
    (out / stray).parent.mkdir(parents=True, exist_ok=True)
    (out / stray).write_text("analysis")
    config = config_for(tmp_path, small_acquisition, "limits.checkpoint_seconds=0")
    said = (rf"{out} holds 1 file\(s\) this job did not write \(e\.g\. {stray}\); move them out "
            rf"of the dataset and run the same command again")
    with pytest.raises(Exception, match=("output.uri: " if when == "start" else
                                         "commit refused, nothing was published: ") + said):
        export_local(config)
    assert not (out / "attributes.json").exists()
    (out / stray).rename(tmp_path / "moved-out.txt")
    result = export_local(config)
    assert result.resumed == result.summary.blocks - (when == "start")
    assert verify(LocalStore(out), beside_store(str(out)), str(out)).ok


def test_a_resume_runs_again_the_blocks_of_a_damaged_ledger_part(tmp_path, small_acquisition):
    """Trial U: a part of an unfinished run's ledger cut short stopped every rerun ("the
    ledger file is damaged", exit 2) with no way out but deleting it by hand. The rerun
    removes it, runs its blocks again, and the result equals an uninterrupted run's."""
    (tmp_path / "clean").mkdir()
    export_local(config_for(tmp_path / "clean", small_acquisition))
    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST)
    plan = make_plan(config_for(tmp_path, small_acquisition))
    parts = sorted((tmp_path / "out.job" / ledger.folder(plan).partition("/")[2] / "tasks").iterdir())
    damaged = parts[0]
    damaged.write_bytes(damaged.read_bytes()[:200])
    stream = io.StringIO()
    result = export(config_for(tmp_path, small_acquisition), LocalExecutor(), stream=stream)
    assert f"resume: 1 part(s) of the ledger cannot be read ({tmp_path}/{ledger.folder(plan)}/" \
           f"tasks/{damaged.name}: the ledger file is damaged" in stream.getvalue()
    assert ": their blocks run again" in stream.getvalue()
    assert 0 < result.resumed < result.summary.blocks
    for path in (tmp_path / "clean/out").rglob("*"):
        if path.is_file():
            assert (tmp_path / "out" / path.relative_to(tmp_path / "clean/out")).read_bytes() == path.read_bytes()


def earlier_versions_record(record_file, **changes) -> None:
    """The job record as a version before the fingerprint's parts were kept wrote it, of a
    fingerprint made otherwise."""
    doc = json.loads(record_file.read_text())
    doc.pop("fingerprint_parts")
    doc.pop("pixels_method")
    record_file.write_text(json.dumps({**doc, "fingerprint": "0" * 32, **changes}))


def test_a_run_of_an_earlier_pixels_method_is_not_this_jobs(tmp_path, small_acquisition):
    """Trial AK, review: a record of this morning (its fingerprint's parts kept, the pixels'
    method not) was resumed and its dataset taken for this job's, though fusion changed
    since; its run is discarded as an earlier version's, and verify says so."""
    from pipelines.cli.verify import main as verify_main
    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST)
    record_file = tmp_path / "out.job.json"
    doc = json.loads(record_file.read_text())
    assert doc.pop("pixels_method") == 2
    # its fingerprint was made without the method: another digest of the same settings
    doc["fingerprint"], doc["fingerprint_parts"]["settings"] = "0" * 32, "1" * 32
    record_file.write_text(json.dumps(doc))
    assert verify_main([str(tmp_path / "out")]) == 2
    stream = io.StringIO()
    result = export(config_for(tmp_path, small_acquisition), LocalExecutor(), stream=stream)
    assert ("discarding an unfinished run made by an earlier version of this tool, whose voxels "
            "may differ (") in stream.getvalue()
    assert result.resumed == 0


def test_an_earlier_versions_runs_are_named_as_such(tmp_path, small_acquisition):
    """Trial T: an unfinished run of an earlier version was discarded "with other settings
    or tile files", and its committed dataset refused as anyone's, though nothing but the
    tool had changed (its job record does not say what it was made of)."""
    failed_run(tmp_path, small_acquisition, *RECORDING_ALL_BUT_THE_LAST)
    record_file = tmp_path / "out.job.json"
    earlier_versions_record(record_file)
    stream = io.StringIO()
    export(config_for(tmp_path, small_acquisition), LocalExecutor(), stream=stream)
    assert ("discarding an unfinished run made by an earlier version of this tool or with other "
            "settings or tile files (its job record does not say which) (") in stream.getvalue()
    earlier_versions_record(record_file)   # now a committed dataset of that version
    with pytest.raises(OutputError, match="already holds a committed dataset of an earlier "
                                          "version of this tool .*whose voxels this version may "
                                          "compute otherwise: tile-verify checks it as it is"):
        export_local(config_for(tmp_path, small_acquisition))
    # trial AK: an N5 of the days when .zarr meant N5, where this job writes Zarr v3, can
    # be nobody's output of this job
    doc = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**doc, "format": "zarr2"}))
    with pytest.raises(OutputError, match="already holds a committed zarr2 dataset of an earlier "
                                          "version of this tool .*, where this job writes n5: "
                                          "pass --overwrite to export it again"):
        export_local(config_for(tmp_path, small_acquisition))
    from pipelines.commit.output import look_at_output  # and the dry run says the run refuses it
    config = config_for(tmp_path, small_acquisition)
    said, refusal = look_at_output(config.output.uri, None, make_plan(config).output)
    assert said == "" and "already holds a committed zarr2 dataset of an earlier version" in refusal
