"""The records a job keeps beside its container, and the two hashes that identify a run.

A container `…/volume` is never written into except for the dataset itself; everything a
job needs to know about it lives next to it, named here and only here:

| name                           | what                                                   |
| ------------------------------ | ------------------------------------------------------ |
| `volume.job.json`              | the job record: fingerprint, arrays, status, summary, metadata digests |
| `volume.job/<fingerprint>/`    | the ledger: Parquet parts per task, then `objects.parquet` |
| `volume.job.lock`              | the lock of the one job writing the output             |
| `volume.report/`               | the run report (summary.json, pictures)                |
| `volume.error.log`             | the full trace of the last failure                     |
| `volume.xml` (BDV layout only) | the BigDataViewer XML (the container's stem + `.xml`)  |
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from pipelines import __version__
from pipelines.errors import OutputError, RecordTaken
from pipelines.pixels import METHOD as FUSION_METHOD
from pipelines.storage import Store
from pipelines.storage import uri as uris

if TYPE_CHECKING:
    from pipelines.plan import ExportPlan


@dataclass(frozen=True)
class Sidecars:
    """The names, relative to the container's folder, of what a job keeps beside `name`."""

    name: str  # the container's own name, e.g. "volume" or "volume.zarr"

    @classmethod
    def of(cls, uri: str) -> Sidecars:
        return cls(uris.name(uri))

    @property
    def job_record(self) -> str:
        return f"{self.name}.job.json"

    @property
    def ledger_root(self) -> str:
        return f"{self.name}.job/"

    def ledger(self, fingerprint: str) -> str:
        return f"{self.name}.job/{fingerprint}"

    @property
    def lock(self) -> str:
        return f"{self.name}.job.lock"

    @property
    def report(self) -> str:
        return f"{self.name}.report"

    @property
    def error_log(self) -> str:
        return f"{self.name}.error.log"

    @property
    def bdv_xml(self) -> str:
        return f"{uris.stem(self.name)}.xml"

    def files(self) -> tuple[str, ...]:
        """The names of the single files kept beside the container."""
        return (self.job_record, self.lock, self.error_log, self.bdv_xml)

    def folders(self) -> tuple[str, ...]:
        """The prefixes (ending in '/') of the folders kept beside the container."""
        return (self.ledger_root, f"{self.report}/")

    def prefixes(self) -> tuple[str, ...]:
        """Key prefixes that cover everything named here (and, as prefixes, also a
        sibling's `volume.job.json.bak`: `holds` tells ours apart)."""
        return self.files() + self.folders()

    def holds(self, key: str) -> bool:
        """Whether `key` (beside the container) is one of the names kept here: exactly a
        file's name, or inside one of the folders."""
        return key in self.files() or key.startswith(self.folders())


def fingerprint(plan: ExportPlan) -> str:
    """A digest of everything that decides the output's bytes: a rerun with the same
    fingerprint writes the same objects, so it may continue over a failed run's leftovers."""
    return _short_digest(repr(sorted(fingerprint_parts(plan).items())))


# ExportPlan's fields that say how a run goes, not what it writes. Every other field is
# part of the fingerprint: a field added to the plan counts unless it is named here, so a
# setting that changes the bytes cannot be left out by mistake (a resume would mix objects
# written both ways).
RUN_ONLY_FIELDS = frozenset({
    "tasks", "task_memory", "rerun", "s3", "tile_cache", "checkpoint_seconds", "resume_verify",
    "fail_blocks", "task_delay",   # test hooks
    "channel_names",               # metadata, which each commit writes anew
    "tile_files", "correction",    # parts of their own (below)
    "job", "lock",                 # which run of it
})


def fingerprint_parts(plan: ExportPlan) -> dict[str, str]:
    """What the fingerprint is made of, each part a digest the job record keeps, so a rerun
    can say what changed: `settings` (the package version, `pixels.METHOD` and every
    field of the plan but RUN_ONLY_FIELDS: the output, the tile table, the stages,
    blending, interpolation),
    `corrections` (the flatfield fields' bytes and the tiles' coefficients: trial J's
    fields estimated again read as "other settings") and `tile_files` (each tile file's
    size and modification time or ETag: the pixels a same-shaped file holds)."""
    essentials = (__version__, FUSION_METHOD, *(getattr(plan, f.name) for f in fields(plan)
                                                if f.name not in RUN_ONLY_FIELDS))
    return {"settings": _settings_digest(essentials),
            "corrections": _short_digest(repr(plan.correction)), "tile_files": plan.tile_files}


def output_settings(plan: ExportPlan) -> str:
    """A digest of the output's settings that no registration or intensity matching
    changes (format, layout, chunks, shards, blocks, type, codec, resolution, channels
    and timepoints, downsampling, blending, interpolation): kept in the job record, so a
    check made before that work can tell an unfinished commit of other settings."""
    out, base = plan.output, plan.output.base
    return _short_digest(repr((out.format, out.layout, base.chunks, base.shard, out.block,
                               base.dtype, base.compressor, base.resolution, base.lead,
                               out.downsample, plan.blending, plan.interpolation, FUSION_METHOD)))


def earlier_version(record: dict[str, Any]) -> bool:
    """Whether job record `record` is of a version whose voxels this one may compute
    otherwise (`pixels.METHOD`; records before it was kept: every one of them): its run
    is not this job's, whatever its settings (trial AK, review)."""
    return record.get("pixels_method") != FUSION_METHOD


_last_settings: list[tuple[tuple, str]] = []


def _settings_digest(essentials: tuple) -> str:
    """The digest of a plan's settings, kept for the last plan asked about: a run asks
    about 8 times, and the repr of a 100 000-tile table takes 0.4 s. The parts are
    immutable, so the same objects (`dataclasses.replace` keeps them) have the same digest."""
    if _last_settings:
        parts, known = _last_settings[0]
        if len(parts) == len(essentials) and all(a is b for a, b in zip(parts, essentials)):
            return known
    digest_now = _short_digest(repr(essentials))
    _last_settings[:] = [(essentials, digest_now)]
    return digest_now


def changed_parts(record: dict[str, Any], plan: ExportPlan) -> set[str] | None:
    """The `fingerprint_parts` in which the run of job record `record` differs from
    `plan`; None for a record from before the parts were kept (it cannot tell)."""
    then = record.get("fingerprint_parts")
    if not isinstance(then, dict):
        return None
    # a part the record does not hold (kept since) cannot be told: not named (review G)
    return {name for name, now in fingerprint_parts(plan).items() if name in then and then[name] != now}


def _short_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def digest(objects: Iterable[tuple[str, int | None]]) -> str:
    """One checksum for a whole dataset: sha256 over the sorted lines `key crc32` of every
    written object and `key -` of every object skipped as empty (crc32 None)."""
    lines = sorted(f"{key} {crc:08x}" if crc is not None else f"{key} -" for key, crc in objects)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_json(store: Store, key: str) -> dict[str, Any]:
    """The job record under `key`; {} when there is none. A record that exists but cannot
    be read is an OutputError naming it: it must never pass for a missing one."""
    try:
        return parse_record(store.get(key), store, key, _restore_record(key))
    except KeyError:
        return {}


def _restore_record(key: str) -> str:
    """What to do about a damaged job record. Removing it is no way out: every command
    (export, --overwrite, verify, clean) needs the record to tell the output ours."""
    ledger = key.removesuffix(".json") + "/"
    return (f"restore it from a backup if there is one: without it this tool cannot verify, "
            f"clean, resume or --overwrite the output, which must then be removed by hand, "
            f"with {key} and {ledger}, before exporting there again")


def require_fields(record: dict[str, Any], beside: Store, uri: str, *needed: str) -> None:
    """OutputError naming the job record of `uri` as damaged when it lacks a field a
    command reads (trial M: a stub record made verify fail with a KeyError traceback)."""
    missing = [k for k in needed if k not in record]
    if missing:
        key = Sidecars.of(uri).job_record
        raise OutputError(f"{beside.uri}/{key} is damaged (it lacks {', '.join(missing)}); "
                          f"{_restore_record(key)}")


def parse_record(data: bytes, store: Store, key: str, advice: str) -> dict[str, Any]:
    """The JSON object in `data`, read from `key` of `store`; OutputError if it is not
    one, ending with `advice` (what the user can do about that record)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise OutputError(f"{store.uri}/{key} is damaged (not a record this tool wrote); {advice}")
    return doc


def write_json(store: Store, key: str, doc: dict[str, Any]) -> None:
    store.put(key, json.dumps(doc, indent=2).encode())


def start_record(plan: ExportPlan, beside: Store) -> ExportPlan:
    """Record the job beside the container before the first task writes anything; returns
    `plan` with this run's id (`ExportPlan.job`), by which `update_record` knows the record
    is still its own. A rerun keeps the `metadata` of a commit that began (`begin_commit`):
    until this run commits, those documents may be in the container, and only the record
    says they are ours."""
    names = Sidecars.of(plan.output.uri)
    key = names.job_record
    began = {k: v for k, v in read_json(beside, key).items() if k == "metadata"} if plan.rerun else {}
    # the run's id is its lock's (`lock.take_lock`): a task tells a run that took the
    # output over by the lock, which changes the moment it does (`lost_lock`); the id
    # the run wrote, never read back (review RV12: read back, it could be the other's)
    plan = replace(plan, job=plan.lock or uuid.uuid4().hex)
    write_json(beside, key, {**_new_record(plan), **began})
    return plan


def _new_record(plan: ExportPlan) -> dict[str, Any]:
    """What a job record holds from the start of the run `plan.job`."""
    return {"job": plan.job, "fingerprint": fingerprint(plan),
            "fingerprint_parts": fingerprint_parts(plan),
            "output_settings": output_settings(plan), "pixels_method": FUSION_METHOD,
            "status": "running",
            "version": __version__, "started": time.time(), "uri": plan.output.uri,
            "format": plan.output.format, "blocks": plan.task_plan.blocks,
            "arrays": {spec.path: asdict(spec) for spec in plan.output.arrays()}}


def document_digests(documents: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """key → sha256 of each metadata document, as the job record keeps them."""
    return {key: hashlib.sha256(data).hexdigest() for key, data in documents}


def begin_commit(plan: ExportPlan, beside: Store, container: dict[str, str],
                 files_beside: dict[str, str]) -> None:
    """Mark the job record `committing`, with the digest of every metadata document the
    commit is about to write (`document_digests`: inside the container, and beside it),
    before the first one is written. A rerun of the same job then knows the documents it
    finds are its own unfinished commit (`commit_began`), and verify checks each against it."""
    update_record(plan, beside, status="committing", committing=time.time(),
                  metadata={"container": container, "beside": files_beside})


def commit_began(record: dict[str, Any]) -> bool:
    """Whether the job record is of a commit that wrote (or was about to write) metadata
    but did not finish: status not committed, metadata digests recorded."""
    return "metadata" in record and record.get("status") != "committed"


def update_record(plan: ExportPlan, beside: Store, **changes: Any) -> None:
    """Merge `changes` into the job record (status, summary, error, times) of the run
    `plan.job`. A record removed meanwhile (by hand: this run holds the lock) is written
    whole again, not as the changes alone (trial M: a stub without `format` made verify
    fail with a KeyError); one of another run (`taken_record`) is left alone."""
    key = Sidecars.of(plan.output.uri).job_record
    record = read_json(beside, key)
    taken = taken_record(plan, beside, record)
    if taken:
        raise RecordTaken(taken)
    write_json(beside, key, {**(record or _new_record(plan)), **changes})


def taken_record(plan: ExportPlan, beside: Store, record: dict[str, Any] | None = None) -> str:
    """Why the output is no longer the run `plan.job`'s, '' while it is (or when the plan
    is of no run): another run took it over, its lock removed by hand while this one went
    on (trial M: this run then marked the other's committed record failed). Told by the
    lock, which the other run replaces first (review RV11: its record comes seconds later,
    after its Spark starts), or by the record."""
    if not plan.job:
        return ""
    names = Sidecars.of(plan.output.uri)
    holder = _lock_of(beside, names)
    # no lock: removed by hand, not yet taken; the record is read also under our own
    # lock, as one written while the lock was gone (trial M) is another run's
    if not holder or holder.get("job") == plan.job:
        record = read_json(beside, names.job_record) if record is None else record
        if not record or record.get("job") == plan.job:
            return ""
    return (f"another run took over {plan.output.uri} while this one went on (its lock "
            f"{names.lock} was removed), and this run left its job "
            f"record alone; blocks it wrote since may have replaced that run's: check its "
            f"dataset with tile-verify once it is committed")


def lost_lock(plan: ExportPlan, beside: Store) -> str:
    """Why a task of the run `plan.job` may not start another block, '' when it may: the
    output's lock is another run's (`TAKEN_OVER`), or gone or damaged (removed by hand
    while the run went on: another run may take it any moment; trial AV). One small read
    of the lock, never of the record, which can be MiBs (review RV12)."""
    if not plan.job:
        return ""
    holder = _lock_of(beside, Sidecars.of(plan.output.uri))
    if holder.get("job") == plan.job:
        return ""
    if holder:
        return TAKEN_OVER
    return (f"stopped: the lock {Sidecars.of(plan.output.uri).lock} was removed or damaged "
            f"while the run went on, so another run may write the output; once no other job "
            f"runs on it, run the same command again (it resumes)")


def _lock_of(beside: Store, names: Sidecars) -> dict[str, Any]:
    """The holder in the output's lock; {} when there is none or it cannot be read (a
    damaged lock is no run's: the lock's own checks name it)."""
    try:
        return read_json(beside, names.lock)
    except OutputError:
        return {}


# what a task of a run whose output another run took over says instead of running its
# next block (`execute.block.run_partition`); the driver then says why (`taken_record`)
TAKEN_OVER = "stopped: another run took the output over"


def record_failure(plan: ExportPlan, beside: Store, message: str, detail: str) -> str:
    """Mark the job record failed and keep the full trace beside the container; returns
    where the trace is, for the one-line message."""
    names = Sidecars.of(plan.output.uri)
    update_record(plan, beside, status="failed", failed=time.time(), error=message)
    beside.put(names.error_log, detail.encode())
    return f"{beside.uri}/{names.error_log}"


def save_trace_here(plan: ExportPlan, detail: str) -> str:
    """Keep the full trace on this machine when the store beside the container cannot
    take it (a store that stopped answering, a full disk): in the current folder, else
    the temporary folder, under a new name (never over a file that is there). Returns
    the path; raises OSError when neither can be written."""
    import tempfile
    name = f"{Sidecars.of(plan.output.uri).name}.error-{time.strftime('%Y%m%d-%H%M%S')}"
    for folder in (os.getcwd(), tempfile.gettempdir()):
        try:
            fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=folder)
        except OSError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(detail)
        return path
    raise OSError("neither the current folder nor the temporary folder can be written")
