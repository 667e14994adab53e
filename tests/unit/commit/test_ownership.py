"""Nothing a user owns is written over or deleted: sidecar names that collide with another
dataset, --overwrite next to or over the job's inputs, a user's file where a BDV XML would
go, a user's file inside an output being replaced. Each is one line, exit 2, and every
file of the user's is still there, byte for byte.

These run `jobs/export.py`'s main() in-process (LocalExecutor-free: they stop before Spark)
or the driver in this process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.commit.ownership import is_ours_by_name
from pipelines.config import load_job
from pipelines.testing.synthetic import make_acquisition
from tests.conftest import write_job
from tests.pipeline_helpers import export_local
from tests.unit.config.test_validation import export_job


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def acq(tmp_path) -> Path:
    make_acquisition(tmp_path / "acq", grid=(2, 1, 1), tile=(24, 20, 6), overlap=0.25, jitter=0,
                     seed=1, truth=False)
    return tmp_path / "acq"


def refused(capsys, code: int, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    return err


def test_a_neighbouring_dataset_named_like_our_ledger_is_never_touched(tmp_path, acq, capsys):
    """Dataset B is `volume.job` next to A = `volume`: A's ledger would live inside B, and
    --overwrite of A used to delete all of B's files."""
    out = tmp_path / "out"
    export_local(load_job(write_job(tmp_path / "b.toml", str(acq / "tiles.json"), str(out / "volume.job"))))
    before = snapshot(out / "volume.job")
    job = write_job(tmp_path / "a.toml", str(acq / "tiles.json"), str(out / "volume"))
    for extra in ([], ["--overwrite"]):
        code = export_job.main([str(job), *extra])
        refused(capsys, code, "volume.job/", "not this job's ledger")
        assert snapshot(out / "volume.job") == before
        assert not (out / "volume").exists()


LOCKED = "volume.job.lock is"   # trial AX: the record was named, not there yet


@pytest.mark.parametrize(("name", "committed", "running"), [
    ("volume.report", "is the report folder of the dataset volume beside it (volume.job.json",
     "is the report folder of the dataset volume beside it (volume.job.lock"),
    ("volume.job", "is the ledger folder of the dataset volume", LOCKED),
    ("volume/extra", "lies inside", LOCKED), ("volume/c0/deeper/extra", "lies inside", LOCKED),
    ("volume.report/extra", "volume.report, the report folder of the dataset volume", LOCKED),  # RV11
    ("volume.job/extra", "volume.job, the ledger folder of the dataset volume", LOCKED),
    # trial AX: a folder under the record's name, made in the run's first seconds (lock
    # only), failed the run; once the record or lock is a file, that file says no
    ("volume.job.json/x", "volume.job.json exists and is not a folder",
     "the job record's name of the dataset volume beside it (volume.job.lock"),
    ("volume.job.lock/x", "the lock's name of the dataset volume beside it (volume.job.json",
     "volume.job.lock exists and is not a folder")])
def test_an_output_in_the_names_or_the_container_of_another_dataset_is_refused(
        tmp_path, acq, capsys, name, committed, running):
    """Trial AV: a job writing `vol.report` while `vol`'s job ran had `vol`'s report
    written into its committed dataset; one writing inside `vol.n5` made that run fail at
    its commit. Refused before anything is written, by the run and its dry run, whether
    the other dataset is committed or its run holds the lock (and has no record yet)."""
    out = tmp_path / "out"
    export_local(load_job(write_job(tmp_path / "a.toml", str(acq / "tiles.json"), str(out / "volume"))))
    before = snapshot(out)
    job = write_job(tmp_path / "b.toml", str(acq / "tiles.json"), str(out / name))
    for extra in ([], ["--dry-run"]):
        refused(capsys, export_job.main([str(job), *extra]), committed)
    assert snapshot(out) == before
    (out / "volume.job.json").rename(tmp_path / "record")   # a run holding the lock only
    (out / "volume.job.lock").write_text("{}")
    refused(capsys, export_job.main([str(job)]), running)


def test_a_users_file_among_our_own_ledgers_is_named_as_such(tmp_path, acq, capsys):
    """Trial W: a note a user put in `volume.job/` beside our committed dataset was "another
    dataset [that] has the name this job keeps its records under", though our job record
    proves the folder ours. It is still refused (--overwrite would delete it with the
    ledgers), in words that say what it is."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "a.toml", str(acq / "tiles.json"), str(out / "volume"))
    export_local(load_job(job))
    (out / "volume.job" / "README.txt").write_text("what I did")
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        code = export_job.main([str(job), *extra])
        err = refused(capsys, code, "volume.job/", "holds files that are not a ledger of this tool "
                      "(e.g. volume.job/README.txt): the folder is kept for its ledgers, which --overwrite "
                      "and tile-clean --remove delete")
        assert "another dataset" not in err
        assert snapshot(out) == before


def test_an_output_over_the_inputs_is_refused_and_overwrite_deletes_nothing(tmp_path, acq, capsys):
    before = snapshot(acq)
    for uri in (acq, acq / "tiles", acq.parent):
        job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(uri))
        code = export_job.main([str(job), "--overwrite"])
        refused(capsys, code, "overlaps an input of this job")
        assert snapshot(acq) == before


def test_an_output_inside_an_input_container_is_refused(tmp_path, capsys):
    from tests.bigstitcher_project import scenario, write_project
    xml = write_project(tmp_path / "acq", scenario("angles"), "n5")
    job = write_job(tmp_path / "job.toml", str(xml), str(tmp_path / "acq" / "dataset.n5" / "fused"))
    refused(capsys, export_job.main([str(job)]), "overlaps an input", "dataset.n5")


def test_a_users_xml_beside_a_bdv_export_is_not_written_over(tmp_path, acq, capsys):
    (tmp_path / "out").mkdir()
    mine = tmp_path / "out" / "volume.xml"
    mine.write_text("<mine/>")
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(tmp_path / "out" / "volume"),
                    extra='layout = "bdv"')
    refused(capsys, export_job.main([str(job)]), "volume.xml already exists", "not from this pipeline")
    assert mine.read_text() == "<mine/>"


def test_overwrite_keeps_a_users_file_inside_the_dataset(tmp_path, acq, capsys):
    """--overwrite replaces our dataset, but a file we did not write (a user's notes inside
    the container) stops it, and nothing is deleted."""
    out = tmp_path / "out" / "volume"
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(out))
    export_local(load_job(job))
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    code = export_job.main([str(job), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "notes.txt" in err and "nothing was deleted" in err, err
    assert snapshot(out) == before
    (out / "notes.txt").unlink()
    assert export_job.main([str(job), "--overwrite"]) == 0   # only ours: replaced


@pytest.mark.parametrize("name", ["volume.n5", "volume.zarr"])
def test_overwrite_leaves_no_folder_of_the_dataset_it_replaced(tmp_path, acq, name):
    """Trial AB: --overwrite with fewer levels and other chunks deleted the old dataset's
    files but not its folders: z5py listed the emptied N5 level folders as groups the
    new `attributes.json` does not name, zarr-python warned of Zarr's. Every folder left
    holds a file of the new dataset."""
    out = tmp_path / "out" / name
    extra = "levels = 3\n"
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(out), extra=extra)
    export_local(load_job(job))
    job.write_text(job.read_text().replace("chunks = [16, 16, 8]", "chunks = [8, 8, 4]")
                   .replace(extra, "levels = 1\n"))
    assert export_job.main([str(job), "--overwrite"]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    folders = [p for p in out.rglob("*") if p.is_dir()]
    assert folders and all(any(f.is_relative_to(d) for f in files) for d in folders), \
        sorted(str(d.relative_to(out)) for d in folders if not any(f.is_relative_to(d) for f in files))


def test_overwrite_needs_our_job_record(tmp_path, acq, capsys):
    out = tmp_path / "out" / "volume"
    out.mkdir(parents=True)
    (out / "0").write_bytes(b"someone else's")   # shaped like a chunk, but no record of ours
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(out))
    refused(capsys, export_job.main([str(job), "--overwrite"]), "no job record", "nothing was deleted")
    assert (out / "0").read_bytes() == b"someone else's"


def test_a_dataset_whose_job_record_was_lost_is_named_before_its_report(tmp_path, acq, capsys):
    """Our export, its job record then removed: the first complaint was the report folder
    beside it ('not from this pipeline'), not the dataset the record vouched for (trial M)."""
    out = tmp_path / "out" / "volume"
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(out))
    export_local(load_job(job))
    (tmp_path / "out" / "volume.job.json").unlink()
    before = snapshot(tmp_path / "out")
    for extra in ([], ["--overwrite"]):
        refused(capsys, export_job.main([str(job), *extra]), f"{out} holds files",
                "volume.report is beside it", "no job record (volume.job.json)")
        assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("key, ours", [
    ("c0/s0/1/2/3", True), ("setup1/timepoint0/s2/0/0/0", True), ("0/c/0/1/2/3", True),
    ("0/0.1.2", True), ("attributes.json", True), ("c1/s0/attributes.json", True), ("zarr.json", True),
    ("notes.txt", False), ("c0/s0/analysis.csv", False), ("results/0/0/0", False), (".DS_Store", False),
])
def test_what_counts_as_ours_by_name(key, ours):
    assert is_ours_by_name(key) is ours


STITCH = """
[stitching]
enabled = true
search = 4
"""


@pytest.mark.parametrize("problem", ["committed", "foreign", "locked", "/sys", "/proc"])
def test_every_output_check_runs_before_stitching(tmp_path, acq, capsys, problem):
    """With [stitching] enabled, an output that holds a committed dataset, files that are
    not ours, a live job's lock, or lies where access() says writable but no file can be
    created (/sys, /proc, as root) is refused in one line before any pair is measured:
    nothing of the stitching is written (no -final.json, no report)."""
    import json
    import os
    import socket
    out = tmp_path / "out" / "volume"
    if problem.startswith("/"):   # a folder access() calls writable (for root) that holds no lock
        out = Path(problem) / f"volume-{tmp_path.name}"
    job = write_job(tmp_path / "job.toml", str(acq / "tiles.json"), str(out), extra=STITCH)
    if problem == "committed":
        export_local(load_job(write_job(tmp_path / "plain.toml", str(acq / "tiles.json"), str(out))))
    elif problem == "foreign":
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    elif problem == "locked":
        out.parent.mkdir(parents=True)
        (tmp_path / "out" / "volume.job.lock").write_text(json.dumps(
            {"job": "x", "host": socket.gethostname(), "pid": os.getppid(), "since": 0}))
    code = export_job.main([str(job)])
    expected = {"committed": "already holds a committed dataset", "foreign": "notes.txt",
                "locked": "is being written by another job",
                "/sys": f"under {problem}", "/proc": f"under {problem}"}[problem]
    refused(capsys, code, expected)
    assert not (acq / "tiles-final.json").exists() and not (acq / "tiles-stitching.json").exists(), \
        "stitching ran before the output was checked"


def test_s3_credentials_scoped_to_a_prefix_may_write_under_it(s3_bucket, monkeypatch):
    """Review RV11: the look for another dataset above an S3 output HEADs each folder's
    job record up to the bucket; keys allowed only `users/alice/*` get 403 there, and the
    output was refused. A folder the credentials may not read ends the look; a dataset
    within reach is still found. (The policy is the moto server's answers made 403
    outside the prefix, as S3 answers a HEAD a policy denies.)"""
    from botocore.exceptions import ClientError

    from pipelines.commit.ownership import check_not_anothers
    from pipelines.errors import OutputError
    from pipelines.storage import S3Options, beside_store
    from pipelines.storage.s3 import S3Store
    endpoint, bucket = s3_bucket
    s3 = S3Options(endpoint_url=endpoint)
    head = S3Store._head

    def policed(self, key):
        if not self._key(key).startswith("users/alice/"):
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
        return head(self, key)
    monkeypatch.setattr(S3Store, "_head", policed)
    uri = f"s3://{bucket}/users/alice/exports/vol.zarr"
    check_not_anothers(uri, beside_store(uri, s3), s3)   # no error
    beside_store(f"s3://{bucket}/users/alice/x", s3).put("exports.job.json", b"{}")
    with pytest.raises(OutputError, match="lies inside .*/users/alice/exports, a dataset"):
        check_not_anothers(uri, beside_store(uri, s3), s3)
