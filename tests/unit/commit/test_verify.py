"""tile-verify checks the metadata against the job record and names every object that is
not the committed dataset's; unreachable storage is one line and exit 2.
(a commit cut short, a ledger not compacted: tests/integration/test_interrupted_commit.py)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli.verify import main as verify_main
from pipelines.config import load_job
from tests.conftest import ROOT, write_job
from tests.pipeline_helpers import export_local

METADATA = ("c0/s0/attributes.json", "c0/s1/attributes.json", "c0/attributes.json", "attributes.json")


@pytest.fixture
def committed(tmp_path, small_acquisition) -> Path:
    """A committed two-level n5-viewer dataset at tmp_path/out; verify finds it sound."""
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"], str(tmp_path / "out"))
    export_local(load_job(job, ["output.levels=2"]))
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("attributes.json")) == sorted(METADATA)
    assert verify_main([str(out)]) == 0
    return out


def junk_file(out: Path) -> list[str]:
    (out / "c0/s0/notes.txt").write_text("a user's notes")
    (out / "c0/s0/0/0/99").write_bytes(b"not a chunk of ours")   # named like a chunk, not recorded
    return ["c0/s0/notes.txt", "c0/s0/0/0/99"]


def truncated_metadata(out: Path) -> list[str]:
    doc = out / "c0/s1/attributes.json"
    doc.write_bytes(doc.read_bytes()[:-5])
    return ["c0/s1/attributes.json"]


def altered_shape(out: Path) -> list[str]:
    doc = out / "c0/s0/attributes.json"
    attributes = json.loads(doc.read_text())
    attributes["dimensions"][0] -= 10        # a reader now sees 10 fewer columns
    doc.write_text(json.dumps(attributes))
    return ["c0/s0/attributes.json"]


def deleted_metadata(out: Path) -> list[str]:
    for key in METADATA:
        (out / key).unlink()
    return list(METADATA)


@pytest.mark.parametrize("damage", [junk_file, truncated_metadata, altered_shape, deleted_metadata])
def test_verify_names_every_object_that_is_not_the_committed_dataset(committed, capsys, damage):
    """Files added inside the container, and array or group metadata truncated, altered or
    deleted: verify exits 1 and names each one."""
    capsys.readouterr()
    named = damage(committed)
    assert verify_main([str(committed)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    for key in named:
        assert any(line.startswith(f"problem: {key}: ") for line in problems), (key, problems)
    assert len(problems) == len(named), problems


@pytest.mark.parametrize("tool", ["verify", "clean"])
@pytest.mark.parametrize("override", ["output.uri=/tmp/elsewhere", "output.format=zarr3",
                                      "spark.master=local[2]"])
def test_verify_and_clean_take_only_s3_settings(tmp_path, capsys, tool, override):
    """The output is the one named on the command line: a --set that would change it (or
    that does nothing here) is refused in one line, exit 2, before any store is opened."""
    from pipelines.cli.clean import main as clean_main
    run = verify_main if tool == "verify" else clean_main
    capsys.readouterr()
    assert run([str(tmp_path / "volume"), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "only s3.KEY=VALUE settings apply here" in err[0], err
    assert override.partition("=")[0] in err[0]


@pytest.mark.parametrize("tool", ["verify", "clean"])
def test_a_bad_s3_setting_of_verify_or_clean_names_set(tmp_path, capsys, tool):
    """Trial X: `tile-clean … --set s3.max_attempts=0` named s3.max_attempts without the
    `--set` the other commands put before a value the command line gave."""
    from pipelines.cli.clean import main as clean_main
    run = verify_main if tool == "verify" else clean_main
    capsys.readouterr()
    assert run([str(tmp_path / "volume"), "--set", "s3.max_attempts=0"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --set s3.max_attempts: expected")


def verify_in_a_process(uri: str, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "jobs/verify.py"), uri]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stopped_moto_server() -> str:
    """The endpoint of a moto server that held a bucket and then stopped."""
    from moto.server import ThreadedMotoServer

    from tests.s3_fixtures import boto_client

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto_client(endpoint).create_bucket(Bucket="gone")
    server.stop()
    return endpoint


@pytest.mark.parametrize("where", ["stopped moto server", "closed port"])
def test_verify_of_unreachable_s3_is_one_line_and_exit_2(where):
    endpoint = stopped_moto_server() if where == "stopped moto server" else f"http://127.0.0.1:{closed_port()}"
    run = verify_in_a_process("s3://gone/volume", f"s3.endpoint_url={endpoint}")
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip() == (f"error: s3://gone/volume: cannot reach the S3 endpoint {endpoint} "
                                  f"(check s3.endpoint_url)"), run.stderr[-3000:]


def test_verify_of_aws_s3_that_cannot_be_reached_says_so_in_words(tmp_path):
    """No s3.endpoint_url means AWS itself; here it cannot be reached (all traffic goes to
    a proxy on a closed port, so the test is the same with and without a network)."""
    import os
    env = {**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}",
           "HTTP_PROXY": f"http://127.0.0.1:{closed_port()}", "NO_PROXY": ""}
    run = verify_in_a_process("s3://some-bucket/volume", env=env)
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip() == ("error: s3://some-bucket/volume: cannot reach AWS S3 (for another "
                                  "S3-compatible store, set s3.endpoint_url)"), run.stderr[-3000:]


def test_an_unfinished_run_is_said_to_be_resumable(committed, capsys):
    """Trial I: verify of a run whose driver was killed said only "the job record says
    'running', not committed"."""
    record = committed.parent / "out.job.json"
    doc = {k: v for k, v in json.loads(record.read_text()).items() if k != "metadata"}
    record.write_text(json.dumps({**doc, "status": "running"}))   # as before its commit
    assert verify_main([str(committed)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("the job record says 'running', not committed: its run did not finish; "
                        "run the same job again to resume it (tile-clean lists what a stopped "
                        "run left)"), err
    # trial AK: an earlier version's run cannot be resumed by this one
    record.write_text(json.dumps({**{k: v for k, v in doc.items() if k != "pixels_method"},
                                  "status": "running"}))   # this morning's: parts, no method
    assert verify_main([str(committed)]) == 2
    assert "it was an earlier version's, which this version cannot resume: finish it with that " \
           "version, or run the job again to start over" in capsys.readouterr().err
