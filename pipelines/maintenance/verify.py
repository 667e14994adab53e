"""Verification of a committed dataset against its ledger.

Every object the ledger records as written must be present with the same size and crc32
and must decode with its array's codec;
every object recorded as skipped (it held only the fill value) must be absent; and the
dataset digest in the job record must match the ledger.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from pipelines.commit import ledger
from pipelines.commit.records import Sidecars, digest, read_json
from pipelines.config import apply_override, build_config
from pipelines.errors import OutputError
from pipelines.formats import ArraySpec, Compressor, format_module, sharding
from pipelines.storage import Store, beside_store, open_store
from pipelines.storage.s3 import S3Options


@dataclass
class Verification:
    checked: int = 0
    written: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def open_output(uri: str, overrides: list[str]) -> tuple[str, Store, Store]:
    """(uri, store, beside) of an existing output, with `--set s3.…` overrides applied,
    for the commands that work on a finished or killed export (verify, clean)."""
    raw = {"input": {"tiles": "unused"}, "output": {"uri": uri}}
    for item in overrides:
        apply_override(raw, item)
    config = build_config(raw)
    s3 = S3Options(**dict(config.s3))
    return config.output.uri, open_store(config.output.uri, s3), beside_store(config.output.uri, s3)


def verify(store: Store, beside: Store, uri: str) -> Verification:
    """Check every recorded object of the committed dataset at `uri`."""
    names = Sidecars.of(uri)
    record = read_json(beside, names.job_record)
    if not record:
        raise OutputError(f"{uri}: no job record {names.job_record} beside it; was it "
                          f"written by this tool?")
    if record.get("status") != "committed":
        raise OutputError(f"{uri}: the job record says {record.get('status')!r}, not committed")
    objects = f"{names.ledger(record['fingerprint'])}/{ledger.OBJECTS}"
    table = ledger.read_objects(beside, objects).to_pylist()
    decode = _decoder(record)
    result = Verification()
    for row in table:
        result.checked += 1
        problem = _check(store, row, decode)
        if problem:
            result.problems.append(problem)
        result.written += row["written"]
        result.skipped += not row["written"]
    listed = [(r["key"], r["crc32"] if r["written"] else None) for r in table]
    if digest(listed) != record["summary"]["digest"]:
        result.problems.append("the ledger does not match the digest in the job record")
    return result


def _decoder(record: dict):
    """A function that decodes one stored object by its key, from the job record's arrays."""
    fmt = format_module(record["format"])
    specs = {path: _spec(doc) for path, doc in record["arrays"].items()}

    def decode(key: str, data: bytes) -> None:
        path = max((p for p in specs if key.startswith(p + "/")), key=len)
        spec = specs[path]
        inner = sharding.decode_shard(spec, data).values() if spec.shard else [data]
        for chunk in inner:
            fmt.decode_chunk(spec, chunk)
    return decode


def _spec(doc: dict) -> ArraySpec:
    tuples: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in doc.items() if k != "compressor"}
    return ArraySpec(**tuples, compressor=Compressor(**doc["compressor"]))


def _check(store: Store, row: dict, decode) -> str | None:
    key = row["key"]
    if not row["written"]:
        return f"{key}: recorded as empty (skipped) but an object exists" if store.exists(key) else None
    try:
        data = store.get(key)
    except KeyError:
        return f"{key}: missing"
    if len(data) != row["nbytes"] or zlib.crc32(data) != row["crc32"]:
        return f"{key}: changed since it was written ({len(data)} bytes, expected {row['nbytes']})"
    try:
        decode(key, data)
    except Exception as e:  # a decoder of any codec may raise its own error type
        return f"{key}: does not decode: {type(e).__name__}: {e}"
    return None
