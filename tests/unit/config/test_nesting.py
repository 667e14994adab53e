"""Deeply nested documents (job file, `--set` value, tile JSON) are one line and exit 2,
never a RecursionError traceback: the parsers of tomllib and json recurse once per level."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_job
from tests.unit.config.test_validation import check_refused, export_job

DEPTH = 100_000  # far beyond Python's recursion limit (1 000)


def nested(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_deeply_nested_job_file_is_one_line(tmp_path: Path, capsys, dry_run):
    job = tmp_path / "job.toml"
    job.write_text(f'[input]\ntiles = {nested()}\n[output]\nuri = "out/volume"\n')
    check_refused(capsys, tmp_path, export_job.main([str(job), *dry_run]),
                  str(job), "nested too deeply")


def test_a_deeply_nested_override_is_one_line(tmp_path: Path, capsys):
    job = write_job(tmp_path / "job.toml", "tiles.json", "out/volume")
    code = export_job.main([str(job), "--set", f"output.chunks={nested()}"])
    check_refused(capsys, tmp_path, code, "--set", "output.chunks", "nested too deeply")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_deeply_nested_tile_json_is_one_line(tmp_path: Path, capsys, dry_run):
    (tmp_path / "tiles.json").write_text(nested())
    job = write_job(tmp_path / "job.toml", "tiles.json", "out/volume")
    check_refused(capsys, tmp_path, export_job.main([str(job), *dry_run]),
                  "tiles.json", "nested too deeply")


@pytest.mark.parametrize("loader, document", [("n5", "attributes.json"), ("zarr", ".zarray"),
                                              ("zarr", ".zattrs")])
def test_a_deeply_nested_container_document_is_one_line(tmp_path: Path, capsys, loader, document):
    """A BigStitcher project's N5 or Zarr views: their JSON documents are parsed too."""
    from tests.bigstitcher_project import scenario, write_project
    xml = write_project(tmp_path / "acq", scenario("grid"), loader)
    found = sorted(p for p in (tmp_path / "acq").rglob(document) if p.is_file())
    assert found, f"no {document} in the {loader} project"
    found[0].write_text(nested())
    job = write_job(tmp_path / "job.toml", str(xml), "out/volume")
    check_refused(capsys, tmp_path, export_job.main([str(job)]), document, "nested too deeply")
