"""tile-clean touches only what this tool names as its own: a URI with no job record
beside it is refused, and of the temporary names and multipart uploads only this
tool's, inside the dataset or under exactly the names kept beside it, are orphans."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from pipelines.cli.clean import main as clean_main
from pipelines.maintenance.clean import find_orphans, remove_orphans
from pipelines.storage import LocalStore, S3Options, beside_store, open_store
from pipelines.storage import local as local_storage
from tests.s3_fixtures import boto_client


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def temporary(name: str) -> str:
    """The name a put of `name` gives its temporary file (`LocalStore._temporary`)."""
    return f".{name}.{uuid.uuid4().hex}.partial"


@pytest.mark.parametrize("remove", [[], ["--remove"]])
def test_a_folder_without_a_job_record_is_refused_and_left_alone(tmp_path, capsys, remove):
    """A user's `video.partial` in a folder this tool never wrote is not a killed writer's."""
    video = tmp_path / "u/sub/video.partial"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"a user's download")
    ours_by_name = tmp_path / "u/sub" / temporary("0")   # even a name like ours: no record, no proof
    ours_by_name.write_bytes(b"?")
    assert clean_main([str(tmp_path / "u"), *remove]) == 2
    assert "no job record u.job.json beside it" in one_error_line(capsys)
    assert video.exists() and ours_by_name.exists()


def test_the_root_of_the_file_system_is_refused_in_one_line(capsys):
    """`tile-clean /` walked the whole file system and died on /proc; a folder without a
    job record is refused too (below), the root even before that."""
    assert clean_main(["/"]) == 2
    assert "'/' is a root folder" in one_error_line(capsys)


def test_only_this_tools_temporary_names_are_orphans(committed):
    """Inside the dataset and beside it, a file ending in `.partial` is an orphan only when
    its name is a put's temporary name, of the dataset or of exactly a name kept beside it."""
    out, folder = committed, committed.parent
    killed = [out / "c0/s0/0/0" / temporary("0"), folder / temporary("out.job.json")]
    users = [out / "c0/s0/video.partial", out / "c0/s0/0/0/.0.1234.partial",
             folder / temporary("out.job.json.bak"), folder / "out.job.json.partial",
             folder / temporary("out.n5.backup")]
    for path in killed + users:
        path.write_bytes(b"bytes")
    store, beside = LocalStore(out), beside_store(str(out))
    listed = sorted(o.where for o in find_orphans(store, beside, str(out)))
    assert listed == sorted(str(p) for p in killed)   # full paths, to paste
    assert remove_orphans(store, beside, str(out)) == 2
    assert not any(p.exists() for p in killed) and all(p.exists() for p in users)


def test_a_folder_whose_type_cannot_be_read_is_skipped(tmp_path, monkeypatch):
    """As /proc/1/cwd in a container: even root's stat() of it is refused. The walk
    skips it instead of ending in a PermissionError traceback."""
    (tmp_path / "a").write_bytes(b"x")
    real_scandir = os.scandir

    class Unreadable:
        name, path = "cwd", str(tmp_path / "cwd")

        def is_dir(self):
            raise PermissionError(13, "Permission denied", self.path)

        is_symlink = is_dir

    class WithUnreadable:
        def __init__(self, path):
            self.entries = real_scandir(path)

        def __enter__(self):
            return [*self.entries, Unreadable()]

        def __exit__(self, *exc):
            self.entries.close()

    monkeypatch.setattr(local_storage.os, "scandir", WithUnreadable)
    store = LocalStore(tmp_path)
    assert list(store.list()) == ["a"] and store.partial_writes() == []


def test_on_s3_only_uploads_inside_the_dataset_or_its_records_are_aborted(s3_bucket, capsys):
    """Uploads of `k/volume.n5.backup`, `k/volumeX/…`, `k/volume.job.json.tmp` or another
    application's under `k/` are not this dataset's, however their keys begin."""
    endpoint, bucket = s3_bucket
    client = boto_client(endpoint)
    ours = ["k/volume/c0/s0/0/0/0", "k/volume.job.json", "k/volume.report/summary.json"]
    theirs = ["k/volume.n5.backup", "k/volumeX/c0", "k/volume.job.json.tmp", "k/other-app/upload"]
    for key in ours + theirs:
        client.create_multipart_upload(Bucket=bucket, Key=key)
    uri, overrides = f"s3://{bucket}/k/volume", ["--set", f"s3.endpoint_url={endpoint}"]

    assert clean_main([f"s3://{bucket}/k", "--remove", *overrides]) == 2   # no job record
    assert "no job record" in one_error_line(capsys)
    running = {"status": "running", "fingerprint": "0" * 32}   # a killed run's record
    client.put_object(Bucket=bucket, Key="k/volume.job.json", Body=json.dumps(running).encode())
    s3 = S3Options(endpoint_url=endpoint)
    listed = find_orphans(open_store(uri, s3), beside_store(uri, s3), uri)
    assert sorted(o.where.split(" ")[0] for o in listed) == sorted(f"s3://{bucket}/{k}" for k in ours)
    assert clean_main([uri, "--remove", *overrides]) == 0
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == sorted(theirs)


@pytest.mark.parametrize("command", ["verify", "clean"])
@pytest.mark.parametrize("stop", [KeyboardInterrupt, "Terminated"])
def test_ctrl_c_in_verify_or_clean_is_one_line(committed, capsys, monkeypatch, command, stop):
    """Defect (review): tile-verify and tile-clean handled their own errors and installed no
    signal handlers, so Ctrl-C printed a traceback; they now run as the jobs do."""
    import pipelines.cli.clean as clean_cli
    import pipelines.cli.verify as verify_cli
    import pipelines.maintenance.clean as cleaning
    import pipelines.maintenance.verify as verifying
    from pipelines.errors import Terminated
    error = Terminated if stop == "Terminated" else stop

    def stopped(*args):
        raise error()
    if command == "verify":
        monkeypatch.setattr(verifying, "verify", stopped)
    else:
        monkeypatch.setattr(cleaning, "find_orphans", stopped)
    module = verify_cli if command == "verify" else clean_cli
    assert module.main([str(committed)]) == (143 if stop == "Terminated" else 130)
    line = one_error_line(capsys)
    assert line.startswith("interrupted by SIG") and "before it finished" in line, line


def test_verify_still_exits_1_on_a_problem(committed, capsys):
    from pipelines.cli.verify import main as verify_main
    assert verify_main([str(committed)]) == 0 and "0 problems" in capsys.readouterr().out
    chunk = next(p for p in committed.rglob("*") if p.is_file() and p.parent.name.isdigit())
    chunk.write_bytes(chunk.read_bytes() + b"x")
    assert verify_main([str(committed)]) == 1
    assert "problem:" in capsys.readouterr().out


def test_a_users_files_beside_the_ledgers_are_not_orphans(committed, capsys):
    """Trial U: a note and a folder a user put in `out.job/` were listed as the "ledger of
    a superseded run" and deleted; only the names the ledgers use are this tool's."""
    ledgers = committed.parent / "out.job"
    notes, kept = ledgers / "README.txt", ledgers / "old/keep.txt"
    superseded = ledgers / ("a" * 32) / "tasks/0-0-0-0-0.0123456789ab.0.parquet"
    for path in (notes, kept, superseded):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert clean_main([str(committed), "--remove"]) == 0
    out = capsys.readouterr().out
    assert "README.txt" not in out and "keep.txt" not in out and "removed 1 orphans" in out
    assert notes.exists() and kept.exists() and not superseded.exists()
    # the superseded run's emptied folders went with it (trial U: left), the user's stay
    assert not superseded.parent.parent.exists() and kept.parent.exists()


def test_clean_names_orphans_as_full_paths_and_removes_the_tasks_folder_it_empties(committed, capsys):
    """Trial U: orphans were named relative to the container or its folder (not something
    to paste into ls or rm), and removing a committed run's staging records left its empty
    tasks/ folder behind."""
    record = json.loads((committed.parent / "out.job.json").read_text())
    tasks = committed.parent / "out.job" / record["fingerprint"] / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    staging = tasks / "0-0-0-0-0.0123456789ab.0.parquet"
    staging.write_bytes(b"x")
    assert clean_main([str(committed)]) == 0
    assert f"orphan: {staging}  (staging record" in capsys.readouterr().out
    assert clean_main([str(committed), "--remove"]) == 0
    assert not tasks.exists() and tasks.parent.is_dir()   # the ledger itself stays


@pytest.mark.parametrize("remove", [[], ["--remove"]])
def test_clean_refuses_an_output_a_live_job_holds_also_when_it_only_lists(committed, capsys, remove):
    """Trial U: listing during a live export called the live writer's temporary file one
    "of a killed writer"; listing and --remove now both say the output is being written."""
    import socket
    record = committed.parent / "out.job.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "running"}))
    (committed.parent / "out.job.lock").write_text(json.dumps(
        {"job": "x", "host": socket.gethostname(), "pid": os.getpid(), "since": 0, "fingerprint": "f"}))
    writing = committed / "c0/s0" / temporary("0")
    writing.write_bytes(b"half")
    assert clean_main([str(committed), *remove]) == 2
    line = one_error_line(capsys)
    assert "is being written by another job" in line and "nothing was looked at" in line
    assert writing.exists()


def test_a_folder_clean_cannot_read_is_a_problem(committed, capsys, monkeypatch):
    """Trial U: an orphan inside a folder tile-clean could not read (permissions) was
    missed without a word, exit 0. The folder is named and the exit is 1; what could be
    seen is still listed."""
    hidden = committed / "c0/s0/0"
    orphan = committed / "c0" / temporary("attributes.json")
    orphan.write_bytes(b"{")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(hidden):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(local_storage.os, "scandir", scandir)
    assert clean_main([str(committed)]) == 1
    out = capsys.readouterr().out
    assert f"orphan: {orphan}  (partial write" in out
    assert f"problem: {committed}/c0/s0/0/ (Permission denied): cannot be read, so what it " \
           f"holds was not looked at" in out


def test_a_reader_that_leaves_early_is_not_the_output_s_fault(committed):
    """Trial AD: `tile-clean OUT | head -1` over many orphans said 'error: cannot read the
    output: Broken pipe', exit 2: the pipe is stdout's, not the dataset's. Now it says it
    stopped, and what that leaves, with the exit code a shell gives SIGPIPE (141)."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    for n in range(2000):   # listed, more than a pipe holds (64 KiB)
        (committed / "c0" / f".{n}.{uuid.uuid4().hex}.partial").write_bytes(b"x")
    run = subprocess.run(f"{sys.executable} {ROOT / 'jobs/clean.py'} {committed} | head -1; "
                         f"exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.startswith("orphan: ") and run.stdout.count("\n") == 1, run.stdout
    assert run.stderr == ("stopped when the reader of its output left (a broken pipe) before it "
                          "finished; what was removed is gone, run it again for the rest\n"), run.stderr
    assert run.returncode == 141, run.returncode


def test_an_upload_into_the_ledger_folder_that_is_no_ledger_is_not_a_killed_writers():
    """Trial AQ: on S3 a user's file uploading into `volume.job/` was listed, and aborted
    by --remove, as a killed writer's partial write, where the same file on disk is never
    listed; an upload of a ledger's part there still is."""
    from pipelines.commit.records import Sidecars
    from pipelines.maintenance.clean import partial_writes
    from pipelines.storage.base import PartialWrite
    from pipelines.storage.memory import MemoryStore

    names = Sidecars.of("s3://lab/volume.zarr")
    fingerprint = "0123456789abcdef0123456789abcdef"
    keys = [f"{names.ledger_root}userfile.txt",
            f"{names.ledger_root}{fingerprint}/tasks/part-0.parquet", names.job_record]

    class Beside(MemoryStore):
        def partial_writes(self, prefix: str = "") -> list[PartialWrite]:
            return [PartialWrite(k, f"{k} (upload)", k) for k in keys if k.startswith(prefix)]
    listed = [o.name.split(" ")[0] for o in partial_writes(MemoryStore("out"), Beside("beside"), names)]
    assert f"{names.ledger_root}userfile.txt" not in listed
    assert f"{names.ledger_root}{fingerprint}/tasks/part-0.parquet" in listed and names.job_record in listed
