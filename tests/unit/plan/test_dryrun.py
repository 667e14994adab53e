"""`--dry-run`: the plan's counts from the tile JSON alone, in memory that does not grow
with the number of chunks."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.plan_scale import write_job as write_scale_job
from pipelines.config import load_job
from pipelines.errors import OutputError
from pipelines.plan import make_plan
from pipelines.plan.dryrun import dry_run
from pipelines.plan.ranges import union_size
from tests.conftest import ROOT, write_job
from tests.pipeline_helpers import export_local, owned_keys


@pytest.mark.parametrize("sets", [
    [], ["output.shard=[2,1,2]"], ["output.shard=[1,1,1]", "output.block=[2,2,2]"], ["output.levels=\"auto\"", "output.block=[1,2,3]"],
    ["output.chunks=[20,12,6]", "output.levels=3"], ["output.block=[3,1,1]", "output.levels=2"],
    ["output.levels=3", "spark.blocks_per_task=4"],
])
def test_dry_run_counts_equal_the_real_plan(small_acquisition, tmp_path, sets):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))
    config = load_job(job, sets)
    plan, paper = make_plan(config), dry_run(config)
    listed = list(plan.task_plan.block_tasks())   # brute force: every block's own objects
    assert paper.tasks == tuple(len(plan.tasks_of(n)) for n in range(len(plan.stages)))
    assert sum(paper.blocks) == len(listed) == len({t.key for t in listed})
    assert paper.shapes == plan.output.shapes
    expected = sum(len(owned_keys(plan, t)) for t in listed)
    assert sum(paper.objects) == expected == sum(plan.object_count(t) for t in listed)
    summary = export_local(config).summary
    assert summary.objects_written + summary.objects_skipped == expected
    assert summary.blocks == len(listed) and summary.tasks == sum(paper.tasks)
    assert paper.task_memory == plan.task_memory


def test_union_size_equals_a_brute_force_count():
    rng = np.random.default_rng(1)
    lo = rng.integers(0, 30, (40, 3))
    hi = lo + rng.integers(1, 12, (40, 3))
    grid = np.zeros((50, 50, 50), bool)
    for a, b in zip(lo, hi):
        grid[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
    assert union_size(lo, hi) == int(grid.sum())


TRACED_DRY_RUN = """
import sys, tracemalloc
from pipelines.config import load_job
from pipelines.errors import OutputError
from pipelines.plan.dryrun import dry_run
config = load_job(sys.argv[1], sys.argv[2:])
dry_run(config)   # once untraced: imports and caches are not the plan's
tracemalloc.start()
dry_run(config)
print(tracemalloc.get_traced_memory()[1])
"""


def traced_peak(job: Path, overrides: list[str]) -> int:
    """The dry run's peak traced allocation, in a process of its own: a thread another
    test left running in this one (an S3 client's) allocates while it is traced."""
    run = subprocess.run([sys.executable, "-c", TRACED_DRY_RUN, str(job), *overrides],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1])


def test_plan_memory_does_not_grow_with_the_chunk_count(tmp_path):
    """A 4 000-tile job (about 16 TiB): 64 × more chunks leave the planning memory alone."""
    job = write_scale_job(tmp_path / "scale", (20, 20, 10), (1024, 1024, 512))
    coarse, fine = ([f"output.chunks=[{c},{c},{c}]", "output.shard=[]", "output.block=[2,2,2]"]
                    for c in (256, 64))
    counts = [sum(dry_run(load_job(job, c)).objects) for c in (coarse, fine)]
    assert counts[1] > 50 * counts[0]
    peaks = [traced_peak(job, c) for c in (coarse, fine)]
    assert peaks[1] < 1.5 * peaks[0] + 2**20, peaks


def test_dry_run_command_opens_no_tile_and_writes_nothing(tmp_path):
    job = write_scale_job(tmp_path / "paper", (4, 3, 2), (512, 512, 256))   # no tile files exist
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "export.py"), str(job), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "tasks:" in run.stdout and "owned by the blocks" in run.stdout
    assert "peak memory for planning" in run.stdout
    assert not (tmp_path / "paper" / "out").exists()


@pytest.mark.parametrize("master", ["local[2", "spark://host-without-port"])
def test_the_dry_run_refuses_a_spark_master_the_real_run_refuses(tmp_path, master):
    """Defect (a user's trial): `--set spark.master=local[2 --dry-run` printed a plan (its
    tasks counted as for an unknown cluster) and exit 0; the real run refused it."""
    job = write_scale_job(tmp_path / "paper", (4, 3, 2), (512, 512, 256))
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "export.py"), str(job), "--dry-run",
                          "--set", f"spark.master={master}"], capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and run.stdout == "", run.stderr
    assert f"spark.master = {master!r}: expected" in lines[0], lines[0]


def test_a_dry_run_whose_reader_left_ends_quietly(tmp_path):
    """`tile-export … --dry-run | head -1`: a reader that closed the pipe before the plan is
    printed (here: before the command starts) costs no traceback."""
    import os
    job = write_scale_job(tmp_path / "paper", (4, 3, 2), (512, 512, 256))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run([sys.executable, str(ROOT / "jobs" / "export.py"), str(job), "--dry-run"],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_dry_run_with_stitching_counts_the_pair_tasks(small_acquisition, tmp_path, capsys):
    """It says the plan is at the stage positions and counts the pairs registration would
    measure: as many as the real registration runs."""
    from pipelines.cli import export as export_cli
    from pipelines.driver import export
    from pipelines.execute.executor import LocalExecutor
    from pipelines.registering import stitch
    source = Path(small_acquisition["paths"]["tiles_json"]).parent   # a copy: stitching writes beside it
    shutil.copytree(source / "tiles", tmp_path / "acq" / "tiles")
    shutil.copy(source / "tiles.json", tmp_path / "acq")
    job = write_job(tmp_path / "job.toml", str(tmp_path / "acq" / "tiles.json"),
                    str(tmp_path / "out"), "[stitching]\nenabled = true\nsearch = 4")
    assert export_cli.main([str(job), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("stitching:"))
    assert "stage positions" in line, printed
    report = stitch(load_job(job), LocalExecutor(), stream=io.StringIO()).outcome.report
    tasks = report["pairs"]["measured"] + report["pairs"]["unmatched"]
    assert tasks >= 4 and line.startswith(f"stitching: {tasks} pair tasks")
    assert dry_run(load_job(job, ["stitching.enabled=false"])).pairs is None
    # trial J: with the registration reusable, the plan was still at the stage positions
    # (164 objects planned, 71 written)
    assert export_cli.main([str(job), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    final = tmp_path / "acq" / "tiles-final.json"
    assert f"stitching: reused {final}; the plan above is at its registered positions" in printed
    planned = dry_run(load_job(job))
    assert planned.pairs is None and planned.registered == str(final)
    exported = export(load_job(job), LocalExecutor(), stream=io.StringIO())
    assert exported.stitching.outcome.reused
    assert planned.shapes == exported.plan.output.shapes
    assert sum(planned.objects) == exported.summary.objects_written + exported.summary.objects_skipped


def test_the_dry_run_refuses_a_plan_the_real_run_refuses_for_memory(small_acquisition, tmp_path,
                                                                   capsys):
    """The plan is printed, then the same one line the real run stops with, exit 2."""
    from pipelines.cli.export import main
    from pipelines.errors import PlanError
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))
    with pytest.raises(PlanError) as real:
        make_plan(load_job(job, ["limits.task_memory=1MiB"]))
    code = main([str(job), "--dry-run", "--set", "limits.task_memory=1MiB"])
    out, err = capsys.readouterr()
    assert code == 2 and err.strip() == f"error: {real.value}", err
    assert "memory:" in out and " needs " in str(real.value)
    assert main([str(job), "--dry-run"]) == 0   # the default budget holds it


# Huge outputs on paper: (tile size x, y, z, --set overrides, objects per level, exit code).
# Counts are exact at any size (Python ints where int64 would wrap), and a plan the real
# run refuses is refused in one line after it is printed, never a traceback.
HUGE = [
    ((2**22, 2**22, 2**10), ["output.chunks=[16,16,16]", "output.block=[1,1,1]",
                             "spark.blocks_per_task=1073741824", "output.levels=2"],
     [2**42, 2**39], 0),
    ((2**40, 2**40, 1), ["output.chunks=[1,1,1]", "output.block=[2147483647,2147483647,1]"],
     [2**80], 2),   # int64 wrapped the union to 0 objects
    ((2**40, 2**40, 2**40), ["output.chunks=[1048576,1048576,1048576]",
                             "output.block=[1048576,1048576,1048576]"],
     [2**60], 2),   # a block of 2^120 voxels wrapped to 0 bytes: ZeroDivisionError
]


@pytest.mark.parametrize("size, sets, objects, code", HUGE)
def test_huge_outputs_are_counted_exactly_or_refused_in_one_line(tmp_path, capsys, size, sets,
                                                                 objects, code):
    import json

    from pipelines.cli.export import main
    (tmp_path / "tiles.json").write_text(json.dumps([{"index": 0, "file": "t.tif", "type": "GRAY8",
                                                      "position": [0, 0, 0], "size": list(size)}]))
    job = write_job(tmp_path / "job.toml", "tiles.json", str(tmp_path / "out"))
    args = [str(job), "--dry-run"] + [a for s in sets for a in ("--set", s)]
    assert main(args) == code
    out, err = capsys.readouterr()
    assert f"per level: {', '.join(f'{n:,}' for n in objects)}" in out, out + err
    assert "-" not in out.split("objects:")[1].split("\n")[0], out
    if code:
        assert err.count("\n") == 1 and err.startswith("error: block [0, 0, 0]"), err
        assert "limits.task_memory" in err


@pytest.mark.parametrize("given", ["job file", "--set"])
def test_a_key_refused_while_planning_names_where_it_was_set(tmp_path, capsys, given):
    """Defect (a user's trial): errors found only while planning (`output.codec: unknown
    codec 'lz4'` for N5) named neither the job file nor `--set`, as those found reading
    the job do."""
    from pipelines.cli.export import main
    job = write_scale_job(tmp_path / "paper", (2, 1, 1), (64, 64, 16))
    text = job.read_text()
    overrides = ["--set", 'output.codec="lz4"'] if given == "--set" else []
    if given == "job file":
        text = text.replace('codec = { name = "zstd", level = 1 }', 'codec = "lz4"')
    job.write_text(text)
    assert main([str(job), "--dry-run", *overrides]) == 2
    line = capsys.readouterr().err.strip()
    where = "--set" if given == "--set" else str(job) + ":"
    assert line.startswith(f"error: {where} output.codec: unknown codec 'lz4'"), line


@pytest.mark.parametrize("voxel_size, warned", [(0.5, False), (0.1, True)])
def test_an_output_far_larger_than_its_tiles_is_warned_of_before_it_runs(tmp_path, voxel_size, warned):
    """Defect (trial H): a calibration typo (z scale 10^7) planned 14.55 TiB from 1.5 MiB
    of tiles and the run started writing without a word. One tile of 20 × 20 × 5 at
    fusion.voxel_size 0.1 makes 200 × 200 × 50 voxels (nearest: 10 per pixel and axis),
    1 000 × its 2 000: warned by the dry run and by the export before its first task; at
    0.5 (40 × 40 × 10, 8 ×) not."""
    from pipelines.driver import export
    from pipelines.execute.executor import LocalExecutor
    from pipelines.testing.synthetic import make_acquisition

    acq = make_acquisition(tmp_path / "acq", grid=(1, 1, 1), tile=(20, 20, 5), overlap=0.0,
                           jitter=0, seed=3, truth=False)
    job = write_job(tmp_path / "job.toml", acq["paths"]["tiles_json"], str(tmp_path / "out"))
    config = load_job(job, [f"fusion.voxel_size={voxel_size}"])
    paper = dry_run(config)
    voxels = int(np.prod(paper.shapes[0]))
    assert voxels == (200 * 200 * 50 if warned else 40 * 40 * 10)
    expected = (f"the blocks compute {voxels:,} voxels from the tiles' 2,000 "
                f"({voxels / 2000:,.0f} ×): check the views' transforms")
    assert (expected in paper.warning) is warned
    assert (paper.lines()[-1] == f"warning:  {paper.warning}") is warned
    stream = io.StringIO()
    export(config, LocalExecutor(), stream=stream)
    assert (f"warning: {expected}" in stream.getvalue()) is warned


def test_the_dry_run_says_what_the_output_holds_and_refuses_what_the_run_refuses(
        small_acquisition, tmp_path, capsys):
    """Trial L: the dry run did not look at the output, so a dataset zarr-python wrote
    there was refused only by the real run. It looks, read only: empty, a committed
    dataset of this tool, or one it did not write (refused in the real run's words,
    exit 2); nothing is written either way."""
    import zarr

    from pipelines.cli.export import main
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out"))

    def printed(*extra: str) -> list[str]:
        capsys.readouterr()
        assert main([str(job), "--dry-run", *extra]) == 0
        return capsys.readouterr().out.splitlines()
    assert printed()[-1] == "output:   empty"   # last: after the plan and its timing
    export_local(load_job(job))
    assert printed()[-1].startswith("output:   holds a committed dataset of this tool: the run "
                                    "says nothing to do if it is this job's")
    assert printed("--overwrite")[-1] == ("output:   holds a committed dataset of this tool: "
                                          "--overwrite replaces it")
    # trial AF: a user's file in it, which the run with --overwrite refuses to delete
    (tmp_path / "out/c0/notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([str(job), "--dry-run", "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --overwrite: {tmp_path / 'out'} holds 1 "
                                              f"file(s) this pipeline did not write (e.g. c0/notes.txt)")
    with pytest.raises(OutputError, match="this pipeline did not write"):   # the run's own line
        export_local(load_job(job), overwrite=True)
    shutil.rmtree(tmp_path / "out")
    shutil.rmtree(tmp_path / "out.report")   # else the run refuses its report's name first
    (tmp_path / "out.job.json").unlink()
    zarr.open_array(str(tmp_path / "out"), mode="w", shape=(4, 4), dtype="u1", zarr_format=2)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main([str(job), "--dry-run"]) == 2
    printed = capsys.readouterr()
    assert "tasks:" in printed.out and printed.err.startswith(
        f"error: output.uri: {tmp_path / 'out'} already holds a dataset that no job record of this pipeline vouches for")
    assert main([str(job), "--dry-run", "--overwrite"]) == 2   # as the real run with it says
    assert capsys.readouterr().err.startswith("error: --overwrite replaces only a dataset this "
                                              "pipeline wrote")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_look_at_an_s3_output_it_cannot_reach_says_so_within_seconds(tmp_path):
    """Planning away from the cluster: an endpoint nothing answers on is a line, within
    seconds, not a refusal nor the job's whole request bound."""
    import socket
    import time
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    from pipelines.commit.output import look_at_output
    from pipelines.storage import S3Options
    spec = dry_run(load_job(write_scale_job(tmp_path / "paper", (2, 1, 1), (64, 64, 16)))).spec
    assert spec is not None
    began = time.perf_counter()
    holds, refusal = look_at_output("s3://bucket/out", S3Options(endpoint_url=f"http://127.0.0.1:{port}"), spec)
    assert time.perf_counter() - began < 15   # the job's own bound: 5 attempts × 30 s
    assert not refusal and holds.startswith("output:   not looked at (")


def test_the_look_at_an_s3_output_whose_bucket_is_missing_refuses_as_the_run_does(tmp_path, s3_bucket,
                                                                                  capsys):
    """Trial AA: a missing output bucket was 'not looked at (NoSuchBucket: …)' and exit 0,
    where the run stops with `bucket '…' does not exist`, exit 2: an endpoint that answers
    gives the run's refusal; one that does not answer is still 'not looked at'."""
    from pipelines.cli.export import main
    endpoint, _ = s3_bucket
    job = write_scale_job(tmp_path / "paper", (2, 1, 1), (64, 64, 16))
    job.write_text(job.read_text().replace('uri = "out/volume.zarr"', 'uri = "s3://no-such-bucket-7/v.zarr"')
                   + f'[s3]\nendpoint_url = "{endpoint}"\n')
    assert main([str(job), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: output.uri: s3://no-such-bucket-7/v.zarr: bucket 'no-such-bucket-7' "
                   "does not exist"), err


def test_the_look_at_an_s3_output_it_cannot_ask_says_so(tmp_path, monkeypatch):
    """Review of stop 48: an endpoint that closes the connection without an answer, and a
    machine without credentials (planning on a workstation for a cluster whose nodes have
    them), are 'not looked at', not the run's refusal."""
    import socket
    import threading

    from pipelines.commit.output import look_at_output
    from pipelines.storage import S3Options
    spec = dry_run(load_job(write_scale_job(tmp_path / "paper", (2, 1, 1), (64, 64, 16)))).spec
    assert spec is not None
    closing = socket.socket()
    closing.bind(("127.0.0.1", 0))
    closing.listen()

    def close_each():
        while True:
            try:
                connection, _ = closing.accept()
            except OSError:
                return
            connection.close()
    threading.Thread(target=close_each, daemon=True).start()
    endpoint = f"http://127.0.0.1:{closing.getsockname()[1]}"
    try:
        holds, refusal = look_at_output("s3://bucket/out", S3Options(endpoint_url=endpoint), spec)
    finally:
        closing.close()
    assert not refusal and holds.startswith("output:   not looked at ("), (holds, refusal)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # other options: a client of its own, which looks for credentials before it connects
    holds, refusal = look_at_output("s3://bucket/out", S3Options(endpoint_url=endpoint, part_size=8 * 2**20), spec)
    assert not refusal and "no AWS credentials found" in holds, (holds, refusal)


def test_a_plan_refused_for_its_tile_cache_says_to_lower_it(small_acquisition, tmp_path):
    """Trial M: with limits.tile_cache above limits.task_memory the refusal advised smaller
    blocks, which cannot help; it names the cache as a way out."""
    from pipelines.errors import PlanError
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    config = load_job(job, ['limits.tile_cache="2GiB"', 'limits.task_memory="1GiB"'])
    with pytest.raises(PlanError, match=r"and limits.tile_cache \(2048.0 MiB\) alone: .* or "
                                        r"lower limits.tile_cache$"):
        make_plan(config)
    assert "lower limits.tile_cache" in dry_run(config).refusal
    # a budget above the fixed terms: the block's terms named, each way out
    config = load_job(job, ['limits.tile_cache="256MiB"', 'limits.task_memory="426000KiB"'])
    with pytest.raises(PlanError, match=r"\(its Python worker's own 160.0 MiB and limits.tile_cache's "
                                        r"256.0 MiB included\) but limits.task_memory is 416.0 MiB; "
                                        r"use a smaller output.block or output.chunks, lower "
                                        r"limits.tile_cache, or raise limits.task_memory"):
        make_plan(config)
    # trial AL: a sharded array's block of one shard cannot be smaller: the shard can
    sharded = load_job(job, ['limits.task_memory="163940KiB"', "limits.tile_cache=0", "output.format=zarr3",
                             "output.shard=[2,2,2]", "output.block=[2,2,2]"])
    with pytest.raises(PlanError, match=r"use a smaller output.block \(whole shards\), output.shard "
                                        r"or output.chunks"):
        make_plan(sharded)


def test_the_dry_run_refuses_a_flatfield_folder_the_run_refuses(small_acquisition, tmp_path):
    """Trial S: a missing fields folder passed the dry run (exit 0) and stopped the run."""
    from pipelines.errors import PipelineError
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    config = load_job(job, [f"fusion.flatfield={tmp_path / 'no-fields'}"])
    for plan in (make_plan, dry_run):
        with pytest.raises(PipelineError, match=r"fusion.flatfield: flatfield folder .*no-fields not found"):
            plan(config)
    # estimated first, from too few tiles here: refused as the run refuses (trial AH)
    with pytest.raises(PipelineError, match="4 tiles, but a flatfield needs at least 6"):
        dry_run(load_job(job, ["fusion.flatfield=auto"]))
    # trial W: "none" meant no correction
    with pytest.raises(PipelineError, match='none not found .*; fusion.flatfield = "" turns the correction off'):
        dry_run(load_job(job, ["fusion.flatfield=none"]))


@pytest.mark.parametrize("setting", ["fusion.flatfield=auto", "flatfield.enabled=true"])
def test_the_dry_run_refuses_too_few_tiles_to_estimate_from(tmp_path, setting):
    """Trial AH: a job of 2 tiles with fields to estimate passed the dry run (exit 0,
    'output: empty'); the run refused it at once."""
    from pipelines.errors import PipelineError
    from pipelines.testing.synthetic import make_acquisition
    acquisition = make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(32, 32, 8), jitter=0,
                                   truth=False)
    job = write_job(tmp_path / "job.toml", acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    with pytest.raises(PipelineError, match="tiles.json: 2 tiles, but a flatfield needs at least 6 to estimate from"):
        dry_run(load_job(job, [setting]))


def test_the_dry_run_refuses_fields_on_a_project_as_the_run_does(tmp_path):
    """Review J: the dry run passed a BigStitcher project with fusion.flatfield (exit 0)."""
    from pipelines.errors import PipelineError
    from tests.bigstitcher_project import scenario, write_project
    xml = write_project(tmp_path / "acq", scenario("angles"), "n5")
    config = load_job(write_job(tmp_path / "job.toml", str(xml), str(tmp_path / "out")),
                      [f"fusion.flatfield={tmp_path / 'fields'}"])
    for plan in (make_plan, dry_run):
        with pytest.raises(PipelineError, match="needs tile JSON inputs"):
            plan(config)


def test_the_dry_run_of_a_run_killed_before_its_first_block_says_unfinished(small_acquisition,
                                                                            tmp_path, capsys):
    """Trial O: a job record of a run killed before any block was written, and no data:
    the dry run said 'output:   empty'."""
    from pipelines.cli.export import main
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    (tmp_path / "out.job.json").write_text('{"status": "interrupted", "job": "x"}')
    capsys.readouterr()
    assert main([str(job), "--dry-run"]) == 0
    # a record that does not say what its run was made of is an earlier version's: the run
    # discards it, and the dry run says so (trial AK)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "output:   holds an unfinished run of an earlier version of this tool: the run discards "
        "it (finish it with that version to keep its blocks)")



@pytest.mark.parametrize("status", ["committing", "interrupted"])
def test_the_dry_run_of_a_commit_cut_short_says_the_run_refuses_another_job_s(small_acquisition,
                                                                              tmp_path, capsys, status):
    """Trial AD: a commit cut short (metadata recorded and written, not committed) was 'an
    unfinished run … discards it otherwise', exit 0, where the run of another job refuses
    it with exit 2. The dry run, which cannot tell whose it is, says both, as the run
    decides (`records.commit_began` with metadata in the store)."""
    import json

    from pipelines.cli.export import main
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    export_local(load_job(job))
    record = json.loads((tmp_path / "out.job.json").read_text())
    (tmp_path / "out.job.json").write_text(json.dumps(record | {"status": status, "fingerprint": "other"}))
    capsys.readouterr()
    assert main([str(job), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "output:   holds an unfinished commit of this tool: the run finishes it if it is this "
        "job's, and refuses it otherwise (--overwrite replaces it)")
    assert main([str(job)]) == 2 and "holds an unfinished commit of a job with other settings" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("uri", "sets", "said"), [
    ("out/volume.zarr", [], "(format zarr3, layout ome, uint16, chunks x,y,z [16, 16, 8], codec zstd)"),
    ("out/volume", ["output.shard=[32, 32, 16]", "output.block=[32, 32, 16]", "output.codec=gzip"],
     "(format zarr3, layout ome, uint16, chunks x,y,z [16, 16, 8], shards [32, 32, 16], codec gzip)"),
    ("out/volume.n5", ["output.dtype=float32"], "(format n5, layout n5-viewer, float32, chunks x,y,z [16, 16, 8], codec"),
])
def test_the_dry_run_names_the_dataset_it_would_write(small_acquisition, tmp_path, uri, sets, said):
    """Trial T: an output named `….zarr` without output.format became Zarr v3 where an
    earlier version wrote N5, and the dry run did not say which format it planned."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / uri))
    first = dry_run(load_job(job, sets)).lines()[0]
    assert first.startswith(f"dataset:  {tmp_path / uri}  ") and said in first, first


def test_the_dry_run_refuses_the_outputs_the_run_refuses_before_it_looks_inside(
        small_acquisition, tmp_path, capsys):
    """Trial AM: "output: empty", exit 0, for an output path that is a file, a user's
    folder under the report's name beside it, and an unfinished run holding a user's file,
    where the run refused each (and printed "discarding …" before refusing the last). The
    dry run now stops with the run's own line; for the user's file in an unfinished run,
    whose refusal the run words by whether it is this job's, with a line of its own."""
    from pipelines.cli.export import main
    from tests.unit.commit.test_commit import failed_run
    out = tmp_path / "out"

    def both_refuse(*overrides: str) -> tuple[str, str]:
        job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(out))
        sets = [a for o in overrides for a in ("--set", o)]
        capsys.readouterr()
        assert main([str(job), "--dry-run", *sets]) == 2
        said = capsys.readouterr().err.strip().splitlines()
        assert len(said) == 1, said
        assert main([str(job), *sets]) == 2
        ran = capsys.readouterr()
        assert "discarding" not in ran.out + ran.err
        return said[0], ran.err

    def same_line(said: str, ran: str) -> bool:
        return said.split(": ", 2)[2].split(";")[0] in ran

    out.write_text("a file")
    said, ran = both_refuse()
    assert "exists and is not a folder" in said and same_line(said, ran)
    out.unlink()
    (tmp_path / "out.report").mkdir()
    (tmp_path / "out.report" / "summary.json").write_text("{}")
    said, ran = both_refuse()
    assert "out.report already exists beside the output" in said and same_line(said, ran)
    shutil.rmtree(tmp_path / "out.report")
    failed_run(tmp_path, small_acquisition)
    (out / "c0" / "notes.txt").write_text("mine")
    for overrides in (["fusion.blending=max"], []):   # another job's unfinished run, this one's
        said, ran = both_refuse(*overrides)
        assert (f"{out} holds 1 file(s) this pipeline did not write (e.g. c0/notes.txt) beside an "
                f"unfinished run, which the run neither continues nor discards") in said, said
        assert "did not write (e.g. c0/notes.txt)" in ran, ran
    assert (out / "c0" / "notes.txt").read_text() == "mine"


def test_a_budget_below_the_workers_own_memory_says_so(small_acquisition, tmp_path):
    """Review of the worker's term: with limits.task_memory at or below the worker's own
    160 MiB no block fits, and the advice to make blocks smaller could not work."""
    from pipelines.errors import PlanError
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    with pytest.raises(PlanError, match=r"^limits.task_memory is 150.0 MiB, no more than a task's Python "
                                        r"worker \(160.0 MiB\) alone: block \[0, 0, 0\] \(.* "
                                        r"voxels\) needs 160.\d MiB in all; raise "
                                        r"limits.task_memory to that$"):
        make_plan(load_job(job, ['limits.task_memory="150MiB"', "limits.tile_cache=0"]))
    # trial AU: "raise it above 416 MiB" led to a second refusal at 417: the need is named
    with pytest.raises(PlanError, match=r"worker \(160.0 MiB\) and limits.tile_cache \(256.0 MiB\) alone: "
                                        r".* needs (416.\d) MiB in all; raise limits.task_memory to "
                                        r"that, or lower limits.tile_cache$") as refused:
        make_plan(load_job(job, ['limits.task_memory="300MiB"']))
    # the need is rounded up: a budget set to it passes (review: rounded down, refused again)
    need = re.search(r"needs (416.\d) MiB", str(refused.value)).group(1)
    make_plan(load_job(job, [f'limits.task_memory="{need}MiB"']))
