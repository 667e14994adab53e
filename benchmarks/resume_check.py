"""What a resume's re-check of recorded objects costs: export 72 900 small objects in this
process, then time both `resume.verify` checks on the committed ledger.

    python benchmarks/resume_check.py
"""

import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from pathlib import Path
from pipelines.testing.synthetic import make_acquisition
from pipelines.config import load_job
from pipelines.commit import confirm, ledger
from pipelines.storage import open_store
from tests.conftest import write_job
from tests.pipeline_helpers import export_local
import shutil

root = Path(__file__).resolve().parents[1] / "data" / "bench" / "resume-check"
shutil.rmtree(root, ignore_errors=True)
make_acquisition(root / "acq", grid=(2, 2, 1), tile=(224, 224, 200), overlap=0.1, jitter=0, truth=False, tile_type="GRAY8")
job = write_job(root / "job.toml", str(root / "acq/tiles.json"), str(root / "out/volume"))
config = load_job(job, ["output.chunks=[8,8,8]", "output.block=[8,8,8]", "output.codec={name='zstd',level=1}"])
t = time.perf_counter(); result = export_local(config); print(f"export {time.perf_counter()-t:.1f} s")
plan = result.plan
store = open_store(str(root / "out/volume"))
beside = open_store(str(root / "out"))
objects = ledger.read_objects(beside, f"{ledger.folder(plan)}/objects.parquet")
n = int(sum(objects["written"].to_pylist()))
mib = sum(objects["nbytes"].to_pylist()) / 2**20
for mode in ("size", "checksum"):
    t = time.perf_counter(); changed = confirm.changed_objects(plan, objects, store, mode); dt = time.perf_counter() - t
    print(f"{mode}: {n} objects ({mib:.1f} MiB stored), {dt:.2f} s = {dt / n * 1e6:.1f} µs per object, {len(changed)} changed")
