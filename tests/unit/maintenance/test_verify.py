"""tile-verify (and tile-clean, where it reads the ledger) on a damaged or missing ledger,
a damaged job record, and changed objects: each is one line naming the file, never a
traceback."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest

from pipelines.cli.clean import main as clean_main
from pipelines.cli.verify import main as verify_main


def ledger_of(out: Path) -> Path:
    record = json.loads((out.parent / f"{out.name}.job.json").read_text())
    return out.parent / f"{out.name}.job" / record["fingerprint"]


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def problems_of(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, captured.err
    return [line for line in captured.out.splitlines() if line.startswith("problem:")]


def damaged_table(out: Path) -> Path:
    table = ledger_of(out) / "objects.parquet"
    cut_in_half(table)
    return table


def damaged_part(out: Path) -> Path:
    """The ledger as a kill after the commit leaves it (parts, no table), one part cut short."""
    ledger = ledger_of(out)
    part = ledger / "tasks/0-0-0.1234.0.parquet"
    part.parent.mkdir(exist_ok=True)
    part.write_bytes((ledger / "objects.parquet").read_bytes())
    cut_in_half(part)
    (ledger / "objects.parquet").unlink()
    return part


@pytest.mark.parametrize("damage", [damaged_table, damaged_part])
def test_a_damaged_ledger_is_one_problem_line_naming_it(committed, capsys, damage):
    damaged = damage(committed)
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    captured = capsys.readouterr()
    problems = [line for line in captured.out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and f"{damaged}: the ledger file is damaged" in problems[0], problems
    assert captured.out.rstrip().endswith(", 1 problem")   # not "1 problems"


def test_clean_on_a_damaged_part_of_the_ledger_is_one_problem_line(committed, capsys):
    """A committed dataset's uncompacted parts are compacted by --remove; one cut short
    stops it in one line naming the part, exit 1, and nothing is compacted."""
    part = damaged_part(committed)
    capsys.readouterr()
    assert clean_main([str(committed), "--remove"]) == 1
    problems = problems_of(capsys)
    assert len(problems) == 1 and f"{part}: the ledger file is damaged" in problems[0], problems
    assert part.exists() and not (part.parent.parent / "objects.parquet").exists()


def test_a_missing_ledger_is_one_problem_line_naming_where_it_should_be(committed, capsys):
    """Without `out.job/` every object looked "not part of the dataset", and a note said
    tile-clean --remove would compact a ledger that is not there."""
    expected = ledger_of(committed) / "objects.parquet"
    shutil.rmtree(committed.parent / "out.job")
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert problems == [f"problem: {expected}: the dataset's ledger is missing (nor are there "
                        f"parts of it in tasks/); the dataset's objects cannot be checked "
                        f"against it"], out
    assert "note:" not in out and "compact" not in out


def test_a_damaged_job_record_is_not_advised_away(committed, capsys):
    """A truncated job record: the advice was to remove it, after which tile-clean took the
    committed dataset's ledger for a superseded run's and deleted it. Now the advice is to
    restore it (removing it makes the output unverifiable), and without it clean refuses."""
    record = committed.parent / "out.job.json"
    record.write_bytes(record.read_bytes()[:100])
    ledger = next((committed.parent / "out.job").iterdir())
    for run in (verify_main, clean_main):
        capsys.readouterr()
        assert run([str(committed)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{record} is damaged" in err[0], err
        assert "restore it from a backup" in err[0] and "remove it and run again" not in err[0]
    record.unlink()   # what the old advice said
    assert clean_main([str(committed), "--remove"]) == 2
    assert (ledger / "objects.parquet").exists()


def test_a_changed_object_says_whether_its_size_or_its_checksum_differs(committed, capsys):
    """A flipped byte was "changed since it was written (144184 bytes, expected 144184)"."""
    chunks = sorted(p for p in committed.rglob("*") if p.is_file() and p.name.isdigit())
    flipped, cut = chunks[0], chunks[1]
    original = flipped.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    cut_size = cut.stat().st_size - 3
    cut.write_bytes(cut.read_bytes()[:cut_size])
    document = committed / "attributes.json"
    document.write_bytes(document.read_bytes()[:-5])
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    problems = problems_of(capsys)
    assert f"problem: {flipped.relative_to(committed)}: content changed since it was written " \
           f"(crc32 {zlib.crc32(data):08x}, expected {zlib.crc32(original):08x}; the size, " \
           f"{len(data)} bytes, is the same)" in problems, problems
    assert f"problem: {cut.relative_to(committed)}: size changed since it was written " \
           f"({cut_size} bytes, expected {cut_size + 3})" in problems, problems
    assert "problem: attributes.json: metadata differs from what was committed " \
           f"({document.stat().st_size} bytes, no longer valid JSON: cut short or " \
           "overwritten)" in problems, problems
    assert len(problems) == 3, problems


def refuse_reads(monkeypatch, refused) -> None:
    """Reads of the keys `refused(key)` names fail as a folder this user may not read does
    (a test run as root cannot make one: root reads everything)."""
    from pipelines.storage import LocalStore
    real_get = LocalStore.get

    def get(self, key):
        if refused(key):
            raise PermissionError(13, "Permission denied", str(self.root / key))
        return real_get(self, key)
    monkeypatch.setattr(LocalStore, "get", get)


def test_objects_that_cannot_be_read_are_problems_not_a_traceback(committed, capsys, monkeypatch):
    refuse_reads(monkeypatch, lambda key: key.startswith("c0/s0/0/") or key == "attributes.json")
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    problems = problems_of(capsys)
    assert "problem: attributes.json: metadata cannot be read (Permission denied)" in problems
    assert all(p.endswith("cannot be read (Permission denied)") for p in problems), problems
    assert any(p.startswith("problem: c0/s0/0/") for p in problems), problems


def test_metadata_that_cannot_be_read_is_told_to_be_made_readable(committed, capsys, monkeypatch):
    """Review of the change: a metadata document alone that cannot be read got the advice
    to restore or export again (its line says 'metadata cannot be read'), not to make it
    readable."""
    from pipelines.maintenance.verify import MAKE_READABLE, REPAIR
    refuse_reads(monkeypatch, lambda key: key == "attributes.json")
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    assert MAKE_READABLE in out and REPAIR not in out, out


@pytest.mark.parametrize("run", [verify_main, clean_main])
def test_a_job_record_that_cannot_be_read_is_one_line(committed, capsys, monkeypatch, run):
    refuse_reads(monkeypatch, lambda key: key == "out.job.json")
    capsys.readouterr()
    assert run([str(committed)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: cannot read {committed.parent / 'out.job.json'}: Permission denied\n"


@pytest.mark.parametrize("command", [verify_main, clean_main])
def test_a_job_file_given_for_the_dataset_names_the_dataset(tmp_path, capsys, command):
    """A verifying trial passed the job file, as the other commands take it, and read only
    'no job record job.toml.job.json beside it'; now it is told which dataset to give."""
    job = tmp_path / "job.toml"
    job.write_text('[input]\ntiles = "tiles.json"\n[output]\nuri = "out/volume.n5"\n')
    assert command([str(job)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {job} is a job file; give the dataset it writes, {tmp_path / 'out/volume.n5'}")
    job.write_text("[output\n")   # a job file that cannot be read still gets the hint
    assert command([str(job)]) == 2
    assert "is a job file; give the dataset it writes (its output.uri)" in capsys.readouterr().err


@pytest.mark.parametrize("command", [verify_main, clean_main])
def test_a_path_where_nothing_is_says_so(tmp_path, capsys, command):
    """Trial N: a mistyped path read 'no job record … beside it; was it written by this
    tool?', as if a stranger's dataset were there."""
    assert command([str(tmp_path / "nonexistent")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nonexistent'}: no such file or folder"


def test_a_job_record_lacking_what_verify_reads_is_one_line(committed, capsys):
    """Trial M: a stub record (the commit's fields only) made verify fail with
    `KeyError: 'format'` and a traceback."""
    import json
    record = committed.parent / "out.job.json"
    kept = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in kept.items() if k not in ("format", "arrays")}))
    capsys.readouterr()
    assert verify_main([str(committed)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{record} is damaged (it lacks format, arrays)" in err[0], err


def test_verify_of_a_running_job_says_it_is_running(committed, capsys):
    """Trial M: verify of a job still running said 'run the same job again to resume it'."""
    import json
    import os
    import socket
    record = committed.parent / "out.job.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "running"}))
    (committed.parent / "out.job.lock").write_text(json.dumps(
        {"job": "x", "host": socket.gethostname(), "pid": os.getpid(), "since": 0, "fingerprint": "f"}))
    capsys.readouterr()
    assert verify_main([str(committed)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {committed} is being written by another job (pid {os.getpid()} on "
        f"{socket.gethostname()}); verify it once that job has finished, or if it is dead, "
        f"remove {committed.parent / 'out.job.lock'}")


def test_a_partial_write_left_by_a_kill_is_noted_not_a_problem(committed, capsys):
    """Trial M: a `.partial` a SIGKILL mid-write left in the container was seen only by
    tile-clean; verify said 0 problems and nothing else. It notes it (readers skip such
    names: not a problem of the dataset) and says how to remove it."""
    leftover = committed / "c0" / ".attributes.json.0123456789abcdef0123456789abcdef.partial"
    leftover.write_bytes(b"{")
    capsys.readouterr()
    assert verify_main([str(committed)]) == 0
    out = capsys.readouterr().out
    assert f"1 partial write(s) of a killed writer (e.g. {leftover})" in out
    assert "tile-clean --remove removes them" in out


def test_verify_in_a_jobs_first_seconds_says_it_has_just_started(tmp_path, capsys):
    """Trial O: with the lock there and no job record yet, verify said 'no such file or
    folder'."""
    (tmp_path / "out.job.lock").write_text("{}")
    assert verify_main([str(tmp_path / "out")]) == 2
    assert "a job has just started writing it" in capsys.readouterr().err


def test_a_lock_left_by_a_job_killed_before_its_record_is_named_and_cleaned(tmp_path, capsys):
    """Trial AD: a job SIGKILLed while Spark started left only its lock; verify and
    tile-clean said for ever that 'a job has just started writing it', and clean could not
    remove the lock the README says it removes. Its driver dead, verify says so (exit 2),
    tile-clean lists the lock and --remove removes it, touching nothing else."""
    import os
    import socket
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock = tmp_path / "out.job.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    (tmp_path / "notes.txt").write_text("mine")
    assert verify_main([str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"(pid {int(dead.stdout)} on this machine, dead) was stopped before it wrote one" in err
    assert "tile-clean" in err and "--remove removes it" in err and "just started" not in err, err
    assert clean_main([str(tmp_path / "out")]) == 0 and lock.exists()
    assert "lock of a dead driver" in capsys.readouterr().out
    assert clean_main([str(tmp_path / "out"), "--remove"]) == 0
    assert not lock.exists() and sorted(os.listdir(tmp_path)) == ["notes.txt"]
    # another machine's lock cannot be told dead from here: the way out is said (review H)
    lock.write_text(json.dumps({"host": "another-node", "pid": 1}))
    for command in (verify_main, clean_main):
        assert command([str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "(pid 1 on another-node) is there" in err and f"if it is dead, remove {lock}" in err, err


def test_verify_shows_progress_says_what_to_do_and_names_a_level_that_is_gone(committed, capsys):
    """Trial U: verify was silent until it ended (hours on a large dataset), a removed
    pyramid level was one `missing` line per object, and no line said what to do."""
    level = committed / "c0/s0"
    objects = [p for p in level.rglob("*") if p.is_file() and p.name != "attributes.json"]
    assert len(objects) > 1
    shutil.rmtree(level)
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    captured = capsys.readouterr()
    assert "objects " in captured.err and "done in" in captured.err   # the progress line
    problems = [line for line in captured.out.splitlines() if line.startswith("problem:")]
    assert problems[0] == (f"problem: c0/s0/: every one of its {len(objects)} objects is missing "
                           f"(the array, or a level of the pyramid, is gone)")
    assert not any(line.endswith(": missing") for line in problems)
    assert "what to do: a committed dataset is not repaired in place" in captured.out


def test_one_missing_object_is_named_on_its_own(committed, capsys):
    chunk = next(p for p in (committed / "c0/s0").rglob("*") if p.is_file() and p.name != "attributes.json")
    chunk.unlink()
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    key = chunk.relative_to(committed).as_posix()
    assert f"problem: {key}: missing" in capsys.readouterr().out


def test_a_dataset_committed_by_an_earlier_version_without_metadata_digests_passes(committed, capsys):
    """Trial T: a healthy dataset of a version whose job record kept no digests of the
    metadata failed verify, 8 problems: that the record has none, and each of its own
    metadata documents called "not part of the dataset". It passes with a note; a stray
    file is still a problem."""
    record = committed.parent / "out.job.json"
    doc = json.loads(record.read_text())
    doc.pop("metadata")
    record.write_text(json.dumps({k: v for k, v in doc.items() if k != "pixels_method"}))
    capsys.readouterr()
    assert verify_main([str(committed)]) == 0
    out = capsys.readouterr().out
    assert "note: the job record holds no digests of the metadata (committed by an earlier " \
           "version): the metadata documents were not checked" in out and "problem:" not in out
    (committed / "c0/notes.txt").write_text("mine")
    assert verify_main([str(committed)]) == 1
    assert "problem: c0/notes.txt: not part of the dataset" in capsys.readouterr().out
    # trial AQ: a record of this version without them was edited: its metadata, edited
    # too, passed with the earlier version's note
    (committed / "c0/notes.txt").unlink()
    record.write_text(json.dumps(doc))
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    assert ("problem: out.job.json holds no digests of the metadata, which this version's commits "
            "always record: the record was edited") in out
    advice = [line for line in out.splitlines() if line.startswith("what to do:")]
    assert advice == ["what to do: restore the ledger and the job record from a copy, or export the "
                      "dataset again with --overwrite"], advice   # review: no object to restore


def test_a_metadata_document_without_its_digest_is_not_told_to_be_moved_out(committed, capsys):
    """Trial AU: a record edited to drop one document's digest told the user to move that
    document (the array's attributes.json) out of the dataset, which breaks it."""
    record = committed.parent / "out.job.json"
    doc = json.loads(record.read_text())
    key = next(k for k in doc["metadata"]["container"] if k.endswith("attributes.json") and "/" in k)
    del doc["metadata"]["container"][key]
    record.write_text(json.dumps(doc))
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {key}: a metadata document the job record holds no digest of" in out, out
    assert "move the files that are not part of the dataset" not in out
    assert "restore the ledger and the job record from a copy" in out


def test_a_folder_where_an_object_was_is_told_to_be_restored(committed, capsys):
    """Trial AQ: a chunk replaced by an empty folder was told only to be made readable."""
    chunk = next(p for p in (committed / "c0/s0").rglob("*") if p.is_file() and p.name != "attributes.json")
    chunk.unlink()
    chunk.mkdir()
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    assert "Is a directory" in out and "what to do: a committed dataset is not repaired in place" in out, out


def test_what_to_do_is_said_for_each_kind_of_problem(committed, capsys):
    """Review K: a stray file was told to restore objects from a copy or export the whole
    dataset again; each kind of problem has its own advice."""
    (committed / "c0/notes.txt").write_text("mine")
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    advice = [line for line in capsys.readouterr().out.splitlines() if line.startswith("what to do:")]
    assert advice == ["what to do: move the files that are not part of the dataset out of it"]
    chunk = next(p for p in (committed / "c0/s0").rglob("*") if p.is_file() and p.name != "attributes.json")
    chunk.write_bytes(chunk.read_bytes()[:-1])
    assert verify_main([str(committed)]) == 1
    advice = [line for line in capsys.readouterr().out.splitlines() if line.startswith("what to do:")]
    assert len(advice) == 2 and "is not repaired in place" in advice[0] and "move the files" in advice[1]


def test_a_ledger_that_is_not_the_committed_one_is_said_first_with_its_own_advice(committed, capsys):
    """Trial W: with another run's ledger in place, every intact object was 'size changed'
    and the advice was to restore the objects or export again; the ledger's line comes
    first, and the advice is about the records."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table_file = ledger_of(committed) / "objects.parquet"
    table = pq.read_table(table_file)
    crcs = [(n + 1) % 2**32 for n in table["crc32"].to_pylist()]   # another run's checksums
    pq.write_table(table.set_column(2, "crc32", pa.array(crcs, pa.uint32())), table_file)
    capsys.readouterr()
    assert verify_main([str(committed)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert problems[0].startswith("problem: the ledger (") and "does not match the dataset digest" in problems[0]
    assert len(problems) > 2   # the objects, as that ledger records them, follow
    advice = [line for line in out.splitlines() if line.startswith("what to do:")]
    assert advice == ["what to do: restore the ledger and the job record from a copy, or export "
                      "the dataset again with --overwrite"]
