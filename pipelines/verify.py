"""Verification of a committed dataset against its ledger.

Every object the ledger records as written must be present with the same size and crc32;
every object recorded as skipped (it held only the fill value) must be absent; and the
dataset digest in the job record must match the ledger.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import ledger
from .errors import OutputError
from .storage import Store


@dataclass
class Verification:
    checked: int = 0
    written: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store, beside: Store, uri: str) -> Verification:
    """Check every recorded object of the committed dataset at `uri`."""
    name = PurePosixPath(uri).name
    try:
        record = json.loads(beside.get(f"{name}.job.json"))
    except KeyError:
        raise OutputError(f"{uri}: no job record {name}.job.json beside it; was it written by this tool?") from None
    if record.get("status") != "committed":
        raise OutputError(f"{uri}: the job record says {record.get('status')!r}, not committed")
    table = ledger.read_objects(beside, f"{name}.job/{record['fingerprint']}/objects.parquet").to_pylist()
    result = Verification()
    for row in table:
        result.checked += 1
        problem = _check(store, row)
        if problem:
            result.problems.append(problem)
        result.written += row["written"]
        result.skipped += not row["written"]
    lines = sorted(f"{r['key']} {r['crc32']:08x}" if r["written"] else f"{r['key']} -" for r in table)
    if hashlib.sha256("\n".join(lines).encode()).hexdigest() != record["summary"]["digest"]:
        result.problems.append("the ledger does not match the digest in the job record")
    return result


def _check(store: Store, row: dict) -> str | None:
    key = row["key"]
    if not row["written"]:
        return f"{key}: recorded as empty (skipped) but an object exists" if store.exists(key) else None
    try:
        data = store.get(key)
    except KeyError:
        return f"{key}: missing"
    if len(data) != row["nbytes"] or zlib.crc32(data) != row["crc32"]:
        return f"{key}: changed since it was written ({len(data)} bytes, expected {row['nbytes']})"
    return None
