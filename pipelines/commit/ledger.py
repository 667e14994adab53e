"""The ledger: what every finished block wrote, kept beside the dataset, never inside it.

Executors record their own work: a task (one partition of blocks) writes Parquet parts
under `<name>.job/<fingerprint>/tasks/`, one row per object it wrote or skipped (key,
bytes, crc32, written) and, in the part's metadata, the blocks those rows belong to, the
channels' value ranges and the times. A part is written when the task ends and every
`limits.checkpoint_seconds` before that, so a driver or executor that dies loses at most
that much finished work: rerunning the same job (same fingerprint) skips every recorded
block, also inside a task that was cut short. Retried and speculative attempts write the
same rows again in parts of their own; readers drop the repeats.

The driver never holds key lists for the run: it checks completeness from block counts,
and after the commit it compacts the parts into one table, `objects.parquet`, which
`jobs/verify.py` checks a dataset against.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.commit.records import Sidecars, digest, fingerprint
from pipelines.errors import LedgerUnreadable
from pipelines.plan import BlockReceipt, ExportPlan
from pipelines.storage import Store

OBJECTS = "objects.parquet"  # the compacted table, in the ledger's folder
PARTS = "tasks"              # the folder of the parts the tasks write
# Below `<name>.job/` (`Sidecars.ledger_root`) each run keeps its ledger in a folder named
# by its fingerprint: every key under such a folder is a ledger's (also the parts of
# earlier versions, `tasks/<task>.json` before 2026-12-03); anything else there is not ours
_LEDGER_FOLDER = re.compile(r"[0-9a-f]{32}/")
# a part's name (`part_name`): stage-timepoint-block index, the task attempt's token, a count
TOKEN_LENGTH = 12
_PART = re.compile(rf"(\d+)-(\d+)(?:-\d+)+\.[0-9a-f]{{{TOKEN_LENGTH}}}\.\d+\.parquet")


def is_ledger_key(relative: str) -> bool:
    """Whether `relative` (a key below the ledger root) lies in a ledger's folder: the one
    rule for what of `<name>.job/` is this tool's (export, --overwrite and tile-clean)."""
    return _LEDGER_FOLDER.match(relative) is not None


def part_name(task: tuple, token: str, count: int) -> str:
    """The file name of a task's `count`-th part (`_task_of` reads its stage and timepoint)."""
    stage, timepoint, index = task
    return f"{'-'.join(map(str, (stage, timepoint, *index)))}.{token}.{count}.parquet"


SCHEMA = pa.schema([("key", pa.string()), ("nbytes", pa.int64()), ("crc32", pa.uint32()),
                    ("written", pa.bool_())])
Ranges = tuple[tuple[float, float], ...]
_PART_FIELDS = {"task", "blocks", "ranges", "seconds", "finished"}   # a part's metadata (`encode_part`)


def folder(plan: ExportPlan) -> str:
    """The ledger of this plan's run: beside the container, under its fingerprint."""
    return Sidecars.of(plan.output.uri).ledger(fingerprint(plan))


@dataclass(frozen=True)
class PartitionSummary:
    """What a task returns to the driver: counts, never keys."""

    task: tuple            # (stage, timepoint, partition index)
    blocks: int            # blocks it ran (those an earlier run recorded are not counted)
    written: int           # objects written
    skipped: int           # objects that held only the fill value
    nbytes: int            # bytes stored
    seconds: float = 0.0   # time its blocks took
    finished: float = 0.0  # time.time() when it ended


class PartRecorder:
    """Collects one task's block receipts and stores them as ledger parts."""

    def __init__(self, beside: Store | None, base: str | None, task: tuple,
                 checkpoint_seconds: float):
        self.beside, self.base, self.task = beside, base, task
        self.checkpoint, self.token = checkpoint_seconds, uuid.uuid4().hex[:TOKEN_LENGTH]
        self.pending: list[BlockReceipt] = []
        self.parts, self.last = 0, time.perf_counter()
        self.totals = [0, 0, 0, 0, 0.0]   # blocks, written, skipped, bytes, seconds

    def add(self, receipt: BlockReceipt) -> None:
        self.pending.append(receipt)
        self.totals[0] += 1
        self.totals[1] += len(receipt.written)
        self.totals[2] += len(receipt.skipped)
        self.totals[3] += receipt.nbytes
        self.totals[4] += receipt.seconds
        if time.perf_counter() - self.last >= self.checkpoint:
            self.flush()

    def flush(self) -> None:
        """Store the receipts added since the last part as one part."""
        if self.pending and self.beside is not None and self.base is not None:
            self.beside.put(f"{self.base}/{PARTS}/{part_name(self.task, self.token, self.parts)}",
                            encode_part(self.task, self.pending))
            self.parts += 1
        self.pending, self.last = [], time.perf_counter()

    def finish(self) -> PartitionSummary:
        self.flush()
        blocks, written, skipped, nbytes, seconds = self.totals
        return PartitionSummary(self.task, int(blocks), int(written), int(skipped), int(nbytes),
                                float(seconds), time.time())


def encode_part(task: tuple, receipts: list[BlockReceipt]) -> bytes:
    """One part: a row per object, and the blocks, ranges and times in its metadata."""
    rows = [(k, n, c, True) for r in receipts for k, n, c in r.written]
    rows += [(k, 0, 0, False) for r in receipts for k in r.skipped]
    columns = [list(col) for col in zip(*rows)] if rows else [[], [], [], []]
    about = {"task": [task[0], task[1], list(task[2])],
             "blocks": [list(r.task[2]) for r in receipts],
             "ranges": _merge_ranges([r.ranges for r in receipts]) if task[0] == 0 else [],
             "seconds": sum(r.seconds for r in receipts),
             "finished": max(r.finished for r in receipts)}
    table = pa.Table.from_arrays([pa.array(c, t.type) for c, t in zip(columns, SCHEMA)],
                                 schema=SCHEMA.with_metadata({"part": json.dumps(about)}))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _merge_ranges(ranges: list) -> list:
    """Per channel, (min, max) over several (min, max) lists."""
    return [[_skipping_nan(min, [r[c][0] for r in ranges]), _skipping_nan(max, [r[c][1] for r in ranges])]
            for c in range(len(ranges[0]))] if ranges else []


def _skipping_nan(pick, values: list) -> Any:
    """min or max of `values` but NaN (a block of NaN only has no range), NaN if all are."""
    numbers = [v for v in values if v == v]
    return pick(numbers) if numbers else math.nan


@dataclass
class Recorded:
    """Everything the ledger's parts hold, repeats dropped."""

    blocks: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (stage, t) → (m, 3)
    ranges: list = field(default_factory=list)        # per channel [min, max], stage-0 blocks
    finished: list[tuple[float, int]] = field(default_factory=list)  # per part (time, blocks)
    seconds: float = 0.0
    objects: pa.Table | None = None                   # one row per object (with objects=True)

    @property
    def block_count(self) -> int:
        return sum(len(b) for b in self.blocks.values())


def read_parts(beside: Store, base: str, objects: bool = True,
               damaged: list[LedgerUnreadable] | None = None) -> Recorded:
    """Read every part under `base` (one listing, one read per part). A part that cannot
    be read raises LedgerUnreadable, or is left out and added to `damaged` when given."""
    found: dict[tuple[int, int], list] = {}
    tables, stage0_ranges, recorded = [], [], Recorded()
    for key in beside.list(f"{base}/{PARTS}/"):
        try:
            table = _read_table(beside, key)
            about = _about(table, beside, key)
        except LedgerUnreadable as e:
            if damaged is None or _task_of(key) is None:
                raise
            damaged.append(e)
            continue
        stage, timepoint, _ = about["task"]
        found.setdefault((stage, timepoint), []).extend(about["blocks"])
        if about["ranges"]:
            stage0_ranges.append(about["ranges"])
        recorded.finished.append((about["finished"], len(about["blocks"])))
        recorded.seconds += about["seconds"]
        if objects:
            tables.append(table.replace_schema_metadata(None))
    recorded.blocks = {k: np.unique(np.array(v, dtype=np.int64).reshape(-1, 3), axis=0)
                       for k, v in found.items()}
    recorded.ranges = _merge_ranges(stage0_ranges)
    if objects:
        recorded.objects = _unique_rows(pa.concat_tables(tables) if tables else SCHEMA.empty_table())
    return recorded


def drop_parts_holding(beside: Store, base: str, keys: set[str]) -> dict[tuple[int, int], int]:
    """Delete the parts that record any of `keys`, and every part of a later stage of the
    same timepoint (later stages read the earlier levels back, so what they wrote may
    carry the damage); their blocks run again. Returns (stage, timepoint) → blocks
    dropped."""
    parts = []
    for key in beside.list(f"{base}/{PARTS}/"):
        table = _read_table(beside, key)
        about = _about(table, beside, key)
        holds = not keys.isdisjoint(table["key"].to_pylist())
        parts.append((key, about["task"][0], about["task"][1], len(about["blocks"]), holds))
    return _drop_with_later_stages(beside, parts)


def drop_damaged_parts(beside: Store, base: str, damaged: list[LedgerUnreadable]) -> int:
    """Delete the parts `read_parts` could not read, and every part of a later stage of the
    same timepoint (as `drop_parts_holding`: what those blocks wrote is not vouched for);
    their blocks run again. Returns the readable parts' blocks dropped with them."""
    keys = {e.key for e in damaged}
    parts = []
    for key in beside.list(f"{base}/{PARTS}/"):
        stage, t = _task_of(key) or (0, 0)
        blocks = 0 if key in keys else len(_about(_read_table(beside, key), beside, key)["blocks"])
        parts.append((key, stage, t, blocks, key in keys))
    return sum(_drop_with_later_stages(beside, parts).values())


def _drop_with_later_stages(beside: Store, parts: list[tuple[str, int, int, int, bool]]
                            ) -> dict[tuple[int, int], int]:
    """Delete the parts (key, stage, timepoint, blocks, dropped) marked dropped and every
    part of a later stage of the same timepoint; (stage, timepoint) → blocks dropped."""
    first: dict[int, int] = {}   # timepoint → the earliest stage with a dropped part
    for _, stage, t, _, drop in parts:
        if drop:
            first[t] = min(first.get(t, stage), stage)
    dropped: dict[tuple[int, int], int] = {}
    for key, stage, t, blocks, drop in parts:
        if drop or (t in first and stage > first[t]):
            beside.delete(key)
            dropped[(stage, t)] = dropped.get((stage, t), 0) + blocks
    return dropped


def _task_of(key: str) -> tuple[int, int] | None:
    """(stage, timepoint) of a part, from its name (`part_name`), None when the name is
    not one of ours."""
    match = _PART.fullmatch(key.rpartition("/")[2])
    return (int(match.group(1)), int(match.group(2))) if match else None


def _unique_rows(table: pa.Table) -> pa.Table:
    """The table without repeated keys (a retried task records its objects again, with the
    same bytes: objects are a pure function of the job)."""
    import pyarrow.compute as pc  # here: 50 ms that every Python worker would import
    if len(pc.unique(table["key"])) == len(table):
        return table
    _, first = np.unique(table["key"].to_numpy(zero_copy_only=False), return_index=True)
    return table.take(np.sort(first))


def compact(beside: Store, base: str, objects: pa.Table) -> str:
    """Write every object's key, size and checksum as one Parquet table; drop the parts.
    Returns the table's key."""
    buffer = io.BytesIO()
    pq.write_table(objects.cast(SCHEMA), buffer)
    target = f"{base}/{OBJECTS}"
    beside.put(target, buffer.getvalue())
    parts = list(beside.list(f"{base}/{PARTS}/"))
    for key in parts:
        beside.delete(key)
    if parts:   # the staging folder they leave empty goes too (trial X: left after every commit)
        beside.remove_empty_folders(parts[0], f"{base}/")
    return target


def read_objects(beside: Store, key: str) -> pa.Table:
    return _read_table(beside, key)


def _read_table(beside: Store, key: str) -> pa.Table:
    """The Parquet table stored under `key`; KeyError when there is none, and
    LedgerUnreadable naming it when its bytes are no table (cut short, overwritten):
    never pyarrow's traceback."""
    data = beside.get(key)
    try:
        return pq.read_table(io.BytesIO(data))
    except pa.ArrowException as e:
        # pyarrow says "Could not open Parquet input source '<Buffer>': <why>. <advice>"
        why = str(e).rpartition("': ")[2].partition(". ")[0]
        raise LedgerUnreadable(f"{beside.uri}/{key}: the ledger file is damaged "
                               f"({len(data)} bytes: {why})", key) from None


def _about(table: pa.Table, beside: Store, key: str) -> dict:
    """What a part says of itself in its metadata (`encode_part`); LedgerUnreadable when
    that is missing or not JSON (a table that is not a part this tool wrote)."""
    try:
        about = json.loads((table.schema.metadata or {})[b"part"])
    except (KeyError, ValueError):
        about = None
    if not isinstance(about, dict) or not about.keys() >= _PART_FIELDS:
        raise LedgerUnreadable(f"{beside.uri}/{key}: the ledger file is damaged (a table "
                               f"without the description of a task's part)", key)
    return about


def read_committed(beside: Store, base: str) -> tuple[pa.Table, bool]:
    """The objects of the committed run whose ledger is `base`, and whether they come from
    the compacted table: a driver killed after the commit but before `compact` leaves
    only the parts, which then are the only record of the objects. LedgerUnreadable
    when there is neither (the folder removed): no committed run has no objects."""
    try:
        return read_objects(beside, f"{base}/{OBJECTS}"), True
    except KeyError:
        if next(iter(beside.list(f"{base}/{PARTS}/")), None) is None:
            raise LedgerUnreadable(f"{beside.uri}/{base}/{OBJECTS}: the dataset's ledger is "
                                   f"missing (nor are there parts of it in {PARTS}/)") from None
        objects = read_parts(beside, base).objects
        assert objects is not None
        return objects, False


def objects_digest(objects: pa.Table) -> str:
    """`records.digest` of a ledger table: what the job record keeps as the dataset's digest."""
    keys, crcs = objects["key"].to_pylist(), objects["crc32"].to_pylist()
    written = objects["written"].to_pylist()
    return digest((k, c if w else None) for k, c, w in zip(keys, crcs, written))
