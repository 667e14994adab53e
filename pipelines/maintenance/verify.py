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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipelines.commit import confirm, ledger
from pipelines.commit.lock import existing_record, held_error, live_holder
from pipelines.commit.ownership import METADATA_NAMES
from pipelines.commit.records import Sidecars, commit_began, earlier_version, require_fields
from pipelines.config import apply_override, blame_override, build_config, load_job
from pipelines.errors import ConfigError, LedgerUnreadable, OutputError
from pipelines.formats import ArraySpec, Compressor, format_module, sharding
from pipelines.maintenance.clean import partial_writes, unlooked_at
from pipelines.report.progress import Progress
from pipelines.storage import Store, beside_store, open_store
from pipelines.storage.s3 import S3Options

# what to do about each kind of problem (README, "Verify"; review K: one advice for all
# said to export again for a stray file or a folder without read permission)
REPAIR = ("a committed dataset is not repaired in place: restore the objects named from a "
          "copy, or export it again with --overwrite (every block is computed again)")
MOVE_OUT = "move the files that are not part of the dataset out of it"
MAKE_READABLE = "make what cannot be read readable to this user, then verify again"
RECORDS_CHANGED = ("restore the ledger and the job record from a copy, or export the dataset "
                   "again with --overwrite")


@dataclass
class Verification:
    """What `verify` found: objects checked, and each problem as one line naming it."""

    checked: int = 0
    written: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # worth knowing, not a problem
    advice: list[str] = field(default_factory=list)   # what to do, per kind of problem

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
    try:
        config = build_config(raw)
    except ConfigError as e:   # an s3 value comes from --set (trial X: named without it)
        raise ConfigError(blame_override(str(e), "", overrides)) from None
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


def verify(store: Store, beside: Store, uri: str, stream: TextIO | None = None) -> Verification:
    """Check the committed dataset at `uri`: every recorded object, the metadata, and that
    nothing else is in the container; progress on `stream` when given."""
    names = Sidecars.of(uri)
    record = existing_record(beside, uri)
    holder = live_holder(beside, uri) if record.get("status") != "committed" else {}
    if holder:   # trial M: "run the same job again to resume it" while it ran
        raise held_error(uri, holder, beside, "verify it once that job has finished", prefix="")
    require_fields(record, beside, uri, "fingerprint", "format", "arrays")
    # a run of an earlier version (`records.earlier_version`) is not this version's to
    # finish or resume: it refuses or discards it (trial AK)
    earlier = earlier_version(record)
    if commit_began(record):
        return Verification(problems=[
            f"the commit of this dataset did not finish (the job record says "
            f"{record.get('status')!r}): " + (
                "it was an earlier version's: finish it with that version, or export again "
                "with --overwrite" if earlier else "run the same job again to finish it")])
    if record.get("status") != "committed":
        how = ("it was an earlier version's, which this version cannot resume: finish it "
               "with that version, or run the job again to start over" if earlier
               # trial AP: "resume it", where the rerun discards what it wrote
               else "its tile files changed while it ran: once they are final, run the same "
                    "job again to start over" if confirm.TILES_CHANGED in str(record.get("error", ""))
               else "run the same job again to resume it")
        raise OutputError(f"{uri}: the job record says {record.get('status')!r}, not committed: "
                          f"its run did not finish; {how} (tile-clean lists what a stopped run left)")
    try:
        table, compacted = ledger.read_committed(beside, names.ledger(record["fingerprint"]))
    except LedgerUnreadable as e:   # nothing to check the objects against: one line says so
        return Verification(problems=[f"{e}; the dataset's objects cannot be checked against it"])
    rows = table.to_pylist()
    array_of = array_finder(record["arrays"])
    result = _check_objects(store, rows, _decoder(record, array_of), stream)
    result.problems = _arrays_gone(result.problems, rows, array_of)
    if not compacted:
        result.notes.append("the ledger was not compacted (the job stopped after its commit); "
                            "tile-clean --remove compacts it")
    listed = list(store.list())   # once, for the metadata of an earlier version and for strays
    edited = ""   # the record's own problem, said after the objects' advice is chosen
    vouched = record.get("metadata") is not None
    if not vouched:
        metadata = [k for k in listed if k.rpartition("/")[2] in METADATA_NAMES]
    if not vouched and earlier:   # trial T: exit 1 for an earlier version's healthy dataset
        result.notes.append("the job record holds no digests of the metadata (committed by an "
                            "earlier version): the metadata documents were not checked")
    elif not vouched:   # trial AQ: an edited record passed edited metadata
        edited = (f"{names.job_record} holds no digests of the metadata, which this version's "
                  f"commits always record: the record was edited, and the metadata documents "
                  f"could not be checked")
    else:
        result.problems += _check_metadata(store, beside, record["metadata"])
        metadata = list(record["metadata"].get("container", {}))
    # objects' lines say ": cannot be read (", metadata's "metadata cannot be read ("
    # (a folder where an object was is gone, not unreadable: trial AQ)
    unreadable = [p for p in result.problems if "cannot be read (" in p and "Is a directory" not in p]
    if ledger.objects_digest(table) != record.get("summary", {}).get("digest"):
        # first, and the advice for it alone: the objects' problems may be the ledger's (trial W)
        result.problems.insert(0,
            f"the ledger ({names.ledger(record['fingerprint'])}/) does not match the dataset "
            f"digest in {names.job_record}: one of them changed after the commit, so the "
            f"objects were checked against a record that may not be the committed one")
        result.advice.append(RECORDS_CHANGED)
    elif len(unreadable) < len(result.problems):
        result.advice.append(REPAIR)
    if edited:
        result.problems.append(edited)
    found = confirm.foreign_keys(listed, table, set(metadata))
    # a metadata document the record holds no digest of: the record's edit as likely as
    # the file's, and moving it out would break the dataset (trial AU). (Without any
    # digests every such document is in `metadata`, so none is found here.)
    folders = {k.rpartition("/")[0] for k in metadata} | set(record["arrays"])
    unvouched = [k for k in found if k.rpartition("/")[2] in METADATA_NAMES
                 and k.rpartition("/")[0] in folders]
    stray = [k for k in found if k not in unvouched]
    result.problems += [f"{key}: a metadata document the job record holds no digest of (the "
                        f"record was edited, or the file added)" for key in unvouched]
    result.problems += [f"{key}: not part of the dataset (neither a recorded object nor its "
                        f"metadata)" for key in stray]
    if (unvouched or edited) and RECORDS_CHANGED not in result.advice:
        result.advice.append(RECORDS_CHANGED)
    if stray:
        result.advice.append(MOVE_OUT)
    # trial M: left by a kill mid-write, seen by tile-clean only; readers skip them. As
    # tile-clean counts them, also those of the records beside the container (trial U)
    partial = partial_writes(store, beside, names)
    if partial:
        result.notes.append(f"{len(partial)} partial write(s) of a killed writer (e.g. "
                            f"{partial[0].where}); tile-clean --remove removes them")
    unread = unlooked_at(store, beside)   # after every listing, the records' included
    result.problems += unread
    if unreadable or unread:
        result.advice.append(MAKE_READABLE)
    return result


def _check_objects(store: Store, rows: list[dict], decode, stream: TextIO | None) -> Verification:
    """`_check` for every ledger row, counted; progress on `stream` (trial U: minutes of
    silence for a few GiB, hours for a large dataset)."""
    result = Verification()
    progress = Progress(len(rows), stream, unit="objects") if stream is not None and rows else None
    read = 0
    for row in rows:
        result.checked += 1
        read += row["nbytes"] if row["written"] else 0
        if progress is not None:
            progress(result.checked, read)
        try:
            problem = _check(store, row, decode)
        except OSError as e:   # a file or folder this user may not read: a problem, no traceback
            problem = f"{row['key']}: cannot be read ({e.strerror or type(e).__name__})"
        if problem:
            result.problems.append(problem)
        result.written += row["written"]
        result.skipped += not row["written"]
    if progress is not None:
        progress.finish()
    return result


def _arrays_gone(problems: list[str], rows: list[dict], array_of) -> list[str]:
    """`problems` with the "missing" lines of an array whose every written object is
    missing replaced by one line for the array (trial U: a removed pyramid level was one
    line per object, millions on a large dataset)."""
    missing: dict[str, int] = {}
    for problem in problems:
        key, _, what = problem.partition(": ")
        if what == "missing":
            path = array_of(key)
            missing[path] = missing.get(path, 0) + 1
    if not missing:
        return problems
    written: dict[str, int] = {}
    for row in rows:
        if row["written"]:
            path = array_of(row["key"])
            written[path] = written.get(path, 0) + 1
    gone = {p for p, n in missing.items() if n == written.get(p) and n > 1}
    if not gone:
        return problems
    kept = [p for p in problems
            if not (p.endswith(": missing") and array_of(p.partition(": ")[0]) in gone)]
    return [f"{path}/: every one of its {written[path]} objects is missing (the array, or a "
            f"level of the pyramid, is gone)" for path in sorted(gone)] + kept


def array_finder(paths) -> Callable[[str], str]:
    """A function: an object's key → the path of the array among `paths` that holds it
    (the longest one it lies under; "" for an array at the container's root). A lookup
    per folder of the key, not a scan of every array per object (review K: 14 s for
    200 000 objects of 500 arrays)."""
    known = set(paths)

    def array_of(key: str) -> str:
        parts = key.split("/")
        for n in range(len(parts) - 1, 0, -1):
            path = "/".join(parts[:n])
            if path in known:
                return path
        return ""
    return array_of


def _check_metadata(store: Store, beside: Store, expected: dict) -> list[str]:
    """A problem for every metadata document that is missing or differs from the digest
    the commit recorded (`records.begin_commit`), in the container and beside it."""
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


def _decoder(record: dict, array_of: Callable[[str], str]):
    """A function that decodes one stored object by its key, from the job record's arrays."""
    fmt = format_module(record["format"])
    specs = {path: _spec(doc) for path, doc in record["arrays"].items()}

    def decode(key: str, data: bytes) -> None:
        spec = specs[array_of(key)]
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
