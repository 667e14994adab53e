"""The ledger: every finished task's receipt, kept beside the dataset, never inside it.

An executor records its receipt right after its last object is written, as one small
object under `<name>.job/<fingerprint>/tasks/`, so a driver that dies loses nothing:
rerunning the same job (same fingerprint) skips every task recorded there. After the
commit the receipts are compacted into one Parquet table, `objects.parquet` (key, bytes,
crc32, written or skipped), which `jobs/verify.py` checks a dataset against, and the
per-task records are removed.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.commit.records import Sidecars, fingerprint
from pipelines.plan import BlockReceipt, ExportPlan
from pipelines.storage import Store

OBJECTS = "objects.parquet"  # the compacted table, in the ledger's folder


def folder(plan: ExportPlan) -> str:
    """The ledger of this plan's run: beside the container, under its fingerprint."""
    return Sidecars.of(plan.output.uri).ledger(fingerprint(plan))


def _task_key(task: tuple) -> str:
    stage, timepoint, index = task
    return f"{stage}-{timepoint}-" + "-".join(map(str, index))


def record(beside: Store, base: str, receipt: BlockReceipt) -> None:
    """Store one task's receipt (called on the executor, after its objects are written)."""
    doc = {"task": [receipt.task[0], receipt.task[1], list(receipt.task[2])],
           "written": [list(w) for w in receipt.written], "skipped": list(receipt.skipped),
           "ranges": [list(r) for r in receipt.ranges], "seconds": receipt.seconds,
           "finished": receipt.finished}
    beside.put(f"{base}/tasks/{_task_key(receipt.task)}.json", json.dumps(doc).encode())


def recorded(beside: Store, base: str) -> list[BlockReceipt]:
    """Every receipt recorded so far under `base` (a rerun skips these tasks)."""
    receipts = []
    for key in beside.list(f"{base}/tasks/"):
        doc = json.loads(beside.get(key))
        stage, timepoint, index = doc["task"]
        receipts.append(BlockReceipt(
            (stage, timepoint, tuple(index)), tuple((k, n, c) for k, n, c in doc["written"]),
            tuple(doc["skipped"]), tuple(tuple(r) for r in doc["ranges"]), doc["seconds"],
            doc.get("finished", 0.0)))
    return receipts


def compact(beside: Store, base: str, receipts: list[BlockReceipt]) -> str:
    """Write every object's key, size and checksum as one Parquet table; drop the per-task
    records. Returns the table's key."""
    rows = [(k, n, c, True) for r in receipts for k, n, c in r.written]
    rows += [(k, 0, 0, False) for r in receipts for k in r.skipped]
    keys, sizes, crcs, written = (list(col) for col in zip(*rows)) if rows else ([], [], [], [])
    table = pa.table({"key": pa.array(keys, pa.string()), "nbytes": pa.array(sizes, pa.int64()),
                      "crc32": pa.array(crcs, pa.uint32()), "written": pa.array(written, pa.bool_())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    target = f"{base}/{OBJECTS}"
    beside.put(target, buffer.getvalue())
    for key in list(beside.list(f"{base}/tasks/")):
        beside.delete(key)
    return target


def read_objects(beside: Store, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(beside.get(key)))
