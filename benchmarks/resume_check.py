"""What a resume's re-check of recorded objects costs: export 72 900 small objects in this
process, then time both `resume.verify` checks on the committed ledger.

    python benchmarks/resume_check.py
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.commit import confirm, ledger  # noqa: E402  (after the path is set)
from pipelines.config import load_job  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.testing.synthetic import make_acquisition  # noqa: E402
from tests.conftest import write_job  # noqa: E402
from tests.pipeline_helpers import export_local  # noqa: E402


def main() -> int:
    root = ROOT / "data" / "bench" / "resume-check"
    shutil.rmtree(root, ignore_errors=True)
    make_acquisition(root / "acq", grid=(2, 2, 1), tile=(224, 224, 200), overlap=0.1, jitter=0,
                     truth=False, tile_type="GRAY8")
    job = write_job(root / "job.toml", str(root / "acq/tiles.json"), str(root / "out/volume"))
    config = load_job(job, ["output.chunks=[8,8,8]", "output.block=[8,8,8]",
                            "output.codec={name='zstd',level=1}"])
    began = time.perf_counter()
    plan = export_local(config).plan
    print(f"export {time.perf_counter() - began:.1f} s")
    store, beside = open_store(str(root / "out/volume")), open_store(str(root / "out"))
    objects = ledger.read_objects(beside, f"{ledger.folder(plan)}/objects.parquet")
    count = int(sum(objects["written"].to_pylist()))
    mib = sum(objects["nbytes"].to_pylist()) / 2**20
    for mode in ("size", "checksum"):
        began = time.perf_counter()
        changed = confirm.changed_objects(objects, store, store.sizes(), mode)
        seconds = time.perf_counter() - began
        print(f"{mode}: {count} objects ({mib:.1f} MiB stored), {seconds:.2f} s = "
              f"{seconds / count * 1e6:.1f} µs per object, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
