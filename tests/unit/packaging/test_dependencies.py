"""The package's declared dependencies are enough: every module of `pipelines` imports in
an interpreter that sees only what `pip install .` brings (the runtime requirements and
theirs, no extras), as a cluster node's environment built the documented way does.

Defect (a user's trial): numcodecs gives `CRC32C` (sharded Zarr v3's index checksum) only
with google-crc32c installed, which only the test extras brought, so an environment
packed with `scripts/package_project.py --venv-pack` failed every task."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[3]

# Shipped for users' own tests, and documented to need pytest (a test extra).
FOR_TESTS = {"pipelines.testing.stores"}

IMPORT_ALL = r"""
import importlib, json, sys
failed = []
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
    except Exception as error:   # any: the module does not work in such an environment
        failed.append(f"{module}: {type(error).__name__}: {error}")
print("\n".join(failed))
"""


def runtime_closure(project: str = "tile-pipelines") -> set[str]:
    """Distributions `pip install <project>` installs: its requirements without extras,
    and theirs, as installed here."""
    seen: set[str] = set()
    todo = [project]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            marker = requirement.partition(";")[2]
            if marker and not Marker(marker).evaluate({"extra": ""}):
                continue
            todo.append(re.split(r"[\s<>=!~\[;(]", requirement, maxsplit=1)[0])
    return seen


def site_of(distributions: set[str], folder: Path) -> Path:
    """A folder that holds only these installed distributions (links to their top-level
    files and folders, their metadata included): the site-packages of an environment
    with nothing else installed."""
    folder.mkdir()
    for name in sorted(distributions):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name == "tile-pipelines":   # installed editable here: the clone is on the path
            continue
        base = Path(str(dist.locate_file("")))
        for top in {Path(str(file)).parts[0] for file in dist.files or ()}:
            if top != ".." and (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)
    return folder


def test_every_module_imports_with_the_runtime_dependencies_alone(tmp_path):
    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for path in (ROOT / "pipelines").rglob("*.py"))
    modules = [name for name in modules if name not in FOR_TESTS]
    allowed = runtime_closure()
    assert {"numcodecs", "pyspark", "numba", "boto3"} <= allowed   # the walk found them
    site = site_of(allowed, tmp_path / "site-packages")
    # -S: no site-packages of this environment; -E: no PYTHONPATH from outside
    result = subprocess.run([sys.executable, "-S", "-E", "-c",
                             f"import sys; sys.path[:0] = [{str(site)!r}, {str(ROOT)!r}]\n" + IMPORT_ALL,
                             json.dumps(modules)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "jobs").glob("*.py")))
def test_a_driver_without_the_package_is_told_how_to_ship_it(script):
    """Trial AG: spark-submit without --py-files ended in a Python traceback
    (ModuleNotFoundError: No module named 'pipelines'). Each job script says it in one
    line, exit 2; -I -S: a Python that sees neither this checkout nor its installs."""
    run = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "jobs" / script), "--help"],
                         capture_output=True, text=True, cwd="/", timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("error: the driver's Python cannot import this project's "
                                 "package (No module named 'pipelines'): give spark-submit "
                                 "--py-files dist/pipelines.zip"), run.stderr
