"""Package this project for spark-submit on a cluster.

    python scripts/package_project.py [--out dist]
    python scripts/package_project.py --venv-pack [--python /path/to/python3.11] [--out dist]

Always writes OUT/pipelines.zip: the `pipelines` package alone (no __pycache__), for
`spark-submit --py-files dist/pipelines.zip`. Spark puts it on the driver's and every
executor's sys.path, so the nodes need only the dependencies (pyproject.toml's
`dependencies`) installed in one Python environment they all see at the same path.

--venv-pack also writes OUT/pipelines-env.tar.gz: a venv with this project and all its
dependencies (`pip install .`), for `spark-submit --archives dist/pipelines-env.tar.gz#env`
with PYSPARK_PYTHON=./env/bin/python (YARN). It is built with `python -m venv` and
tar, without venv-pack or conda-pack, and has the limit every packed venv has (venv-pack's
too): it does not contain the Python interpreter itself. `env/bin/python` links to the base
interpreter this venv was made from, so every node needs that same Python version at the
same path (nodes installed from one image, or a Python on a shared filesystem). The
libraries in the venv are found relative to it and travel fine. If your nodes differ, use
conda-pack, which ships the interpreter too, or install the dependencies on every node and
ship only the zip.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip epoch: the same sources give the same bytes


def build_zip(package: Path, dest: Path) -> Path:
    """Zip the package folder `package` (as `<name>/...`) into `dest` for --py-files.

    Sources only, in sorted order with fixed timestamps, so the zip is reproducible:
    a rebuilt zip of unchanged sources is byte-identical (cache-friendly on HDFS/S3, and
    easy to check which code a cluster ran). Compiled files are left out because
    executors may run another Python than the one that compiled them.
    """
    package, dest = Path(package).resolve(), Path(dest)
    if not (package / "__init__.py").is_file():
        raise ValueError(f"{package}: not a Python package (no __init__.py)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in package.rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
    # a unique temporary name, then a rename: two jobs packaging at once (sbatch scripts
    # do, at start) never see or leave a half-written zip
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(package.parent).as_posix(), FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide the zip from other users' jobs
        os.replace(partial, dest)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return dest


def build_env(root: Path, dest: Path, python: str = sys.executable) -> Path:
    """A venv with the project installed (`pip install root`), packed as a .tar.gz whose
    top level is the venv's contents (so `--archives dest#env` unpacks it as ./env).

    `python` is the interpreter the venv is based on; nodes need it at the same path.
    Needs pip to reach an index (or a wheelhouse configured for pip).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pipelines-env-") as tmp:
        env = Path(tmp) / "env"
        subprocess.run([python, "-m", "venv", str(env)], check=True)
        pip = [str(env / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        # not editable: an editable install points at this checkout, which nodes do not have
        subprocess.run([*pip, "install", "--quiet", str(root)], check=True)
        fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for item in sorted(env.iterdir()):
                    # symlinks stay links: bin/python must point at the base interpreter
                    tar.add(item, arcname=item.name,
                            filter=lambda info: None if "__pycache__" in info.name else info)
            os.chmod(partial, 0o644)
            os.replace(partial, dest)  # only a finished archive ever appears at dest
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build dist/pipelines.zip for spark-submit --py-files (and optionally a "
                    "packed venv for --archives).",
        epilog="--venv-pack: the packed venv does not contain the interpreter; every node needs "
               "the base Python it links to at the same path (see this script's docstring). "
               "Use conda-pack when nodes differ.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--venv-pack", action="store_true",
                        help="also build OUT/pipelines-env.tar.gz: a venv with the project and its "
                             "dependencies, for --archives ...#env and PYSPARK_PYTHON=./env/bin/python")
    parser.add_argument("--python", default=sys.executable,
                        help="base interpreter of the packed venv (default: this one); must exist "
                             "at the same path on every node")
    args = parser.parse_args(argv)
    zipped = build_zip(ROOT / "pipelines", args.out / "pipelines.zip")
    print(f"wrote {zipped}  (spark-submit --py-files {zipped} jobs/export.py JOB.toml)")
    if args.venv_pack:
        packed = build_env(ROOT, args.out / "pipelines-env.tar.gz", args.python)
        print(f"wrote {packed}  (spark-submit --archives {packed}#env "
              f"--conf spark.pyspark.python=./env/bin/python ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
