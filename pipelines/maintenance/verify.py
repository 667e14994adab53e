"""Verification of a committed dataset against its ledger and job record.

Every object the ledger records as written must be present with the same size and crc32
and must decode with its array's codec; every object recorded as skipped (it held only
the fill value) must be absent; the dataset digest in the job record must match the
ledger (the compacted table, or the parts a kill before the compaction left); every
metadata document, in the container and beside it, must be there with the digest the
commit recorded; and the container must hold nothing else. A commit that began but did
not finish is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.commit import ledger
from pipelines.commit.lock import held_error, live_holder
from pipelines.commit.records import Sidecars, commit_began, existing_record, require_fields
from pipelines.config import apply_override, build_config, load_job
from pipelines.errors import ConfigError, LedgerUnreadable, OutputError
from pipelines.formats import ArraySpec, Compressor, format_module, sharding
from pipelines.storage import Store, beside_store, open_store
from pipelines.storage.s3 import S3Options


@dataclass
class Verification:
    """What `verify` found: objects checked, and each problem as one line naming it."""

    checked: int = 0
    written: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # worth knowing, not a problem

    @property
    def ok(self) -> bool:
        return not self.problems


def open_output(uri: str, overrides: list[str]) -> tuple[str, Store, Store]:
    """(uri, store, beside) of an existing output, with `--set s3.…` overrides applied,
    for the commands that work on a finished or killed export (verify, clean)."""
    _not_a_job_file(uri)
    raw = {"input": {"tiles": "unused"}, "output": {"uri": uri}}
    for item in overrides:
        if not item.strip().startswith("s3."):   # the output is the one named: nothing else applies
            raise ConfigError(f"--set {item.partition('=')[0].strip()}: only s3.KEY=VALUE "
                              f"settings apply here (the output is {uri})")
        apply_override(raw, item)
    config = build_config(raw)
    s3 = S3Options(**dict(config.s3))
    store = open_store(config.output.uri, s3)
    store.check_reachable()   # one line for storage that is down, not a botocore traceback
    return config.output.uri, store, beside_store(config.output.uri, s3)


def _not_a_job_file(uri: str) -> None:
    """ConfigError for a job file given where the dataset is meant (`tile-verify job.toml`,
    as the other commands take it), naming the dataset the job writes when it can."""
    path = Path(uri)
    if "://" in uri or path.suffix != ".toml" or not path.is_file():
        return
    try:
        output = f", {load_job(path).output.uri}"
    except ConfigError:
        output = " (its output.uri)"
    raise ConfigError(f"{uri} is a job file; give the dataset it writes{output}")


def verify(store: Store, beside: Store, uri: str) -> Verification:
    """Check the committed dataset at `uri`: every recorded object, the metadata, and that
    nothing else is in the container."""
    names = Sidecars.of(uri)
    record = existing_record(beside, uri)
    holder = live_holder(beside, uri) if record.get("status") != "committed" else {}
    if holder:   # trial M: "run the same job again to resume it" while it ran
        raise held_error(uri, holder, beside, "verify it once that job has finished", prefix="")
    require_fields(record, beside, uri, "fingerprint", "format", "arrays")
    if commit_began(record):
        return Verification(problems=[
            f"the commit of this dataset did not finish (the job record says "
            f"{record.get('status')!r}): run the same job again to finish it"])
    if record.get("status") != "committed":
        raise OutputError(f"{uri}: the job record says {record.get('status')!r}, not committed: "
                          f"its run did not finish; run the same job again to resume it "
                          f"(tile-clean lists what a stopped run left)")
    try:
        table, compacted = ledger.read_committed(beside, names.ledger(record["fingerprint"]))
    except LedgerUnreadable as e:   # nothing to check the objects against: one line says so
        return Verification(problems=[f"{e}; the dataset's objects cannot be checked against it"])
    rows = table.to_pylist()
    result = _check_objects(store, rows, _decoder(record))
    if not compacted:
        result.notes.append("the ledger was not compacted (the job stopped after its commit); "
                            "tile-clean --remove compacts it")
    if ledger.objects_digest(table) != record.get("summary", {}).get("digest"):
        result.problems.append("the ledger does not match the digest in the job record")
    result.problems += _check_metadata(store, beside, record.get("metadata"))
    ours = {r["key"] for r in rows} | set(record.get("metadata", {}).get("container", {}))
    result.problems += [f"{key}: not part of the dataset (neither a recorded object nor its "
                        f"metadata)" for key in sorted(store.list()) if key not in ours]
    partial = store.partial_writes()
    if partial:   # trial M: left by a kill mid-write, seen by tile-clean only; readers skip them
        result.notes.append(f"{len(partial)} partial write(s) of a killed writer (e.g. "
                            f"{partial[0].name}); tile-clean --remove removes them")
    return result


def _check_objects(store: Store, rows: list[dict], decode) -> Verification:
    """`_check` for every ledger row, counted."""
    result = Verification()
    for row in rows:
        result.checked += 1
        try:
            problem = _check(store, row, decode)
        except OSError as e:   # a file or folder this user may not read: a problem, no traceback
            problem = f"{row['key']}: cannot be read ({e.strerror or type(e).__name__})"
        if problem:
            result.problems.append(problem)
        result.written += row["written"]
        result.skipped += not row["written"]
    return result


def _check_metadata(store: Store, beside: Store, expected: dict | None) -> list[str]:
    """A problem for every metadata document that is missing or differs from the digest
    the commit recorded (`records.begin_commit`), in the container and beside it."""
    if expected is None:
        return ["the job record holds no digests of the metadata (committed by an earlier "
                "version): the metadata cannot be checked"]
    problems = []
    for owner, documents in ((store, expected["container"]), (beside, expected["beside"])):
        for key, sha in sorted(documents.items()):
            try:
                data = owner.get(key)
            except KeyError:
                problems.append(f"{key}: metadata missing")
                continue
            except OSError as e:   # this user may not read it
                problems.append(f"{key}: metadata cannot be read ({e.strerror or type(e).__name__})")
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                problems.append(f"{key}: metadata differs from what was committed "
                                f"({len(data)} bytes{_no_longer_json(key, data)})")
    return problems


def _no_longer_json(key: str, data: bytes) -> str:
    """', no longer valid JSON: cut short or overwritten' for a JSON document (every one
    but the BigDataViewer XML) that does not parse, else ''. The record keeps only a
    digest, not the size, so a cut can be told only this way."""
    if key.endswith(".xml"):
        return ""
    try:
        json.loads(data)
    except ValueError:   # UnicodeDecodeError is one
        return ", no longer valid JSON: cut short or overwritten"
    return ""


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
    if len(data) != row["nbytes"]:
        return f"{key}: size changed since it was written ({len(data)} bytes, expected {row['nbytes']})"
    crc = zlib.crc32(data)
    if crc != row["crc32"]:
        return (f"{key}: content changed since it was written (crc32 {crc:08x}, expected "
                f"{row['crc32']:08x}; the size, {len(data)} bytes, is the same)")
    try:
        decode(key, data)
    except Exception as e:  # a decoder of any codec may raise its own error type
        return f"{key}: does not decode: {type(e).__name__}: {e}"
    return None
