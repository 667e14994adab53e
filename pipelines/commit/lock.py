"""One writer per output: the lock beside the container.

The lock is created with its content in one atomic step (`Store.put_if_absent`), so no
crash can leave an empty or half-written lock. A lock whose driver died on this machine
is taken over by removing exactly that lock (`Store.delete_if_unchanged`): of two drivers
racing to take over, one removes it and creates its own; the other then finds a live lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipelines.commit.records import Sidecars, fingerprint, parse_record, read_json
from pipelines.errors import OutputError
from pipelines.storage import Store

if TYPE_CHECKING:
    from pipelines.plan import ExportPlan

_ATTEMPTS = 3  # create, or take over a dead lock and create, a few times before giving up
# A damaged lock holds nothing worth keeping: once no job runs, removing it is the fix.
REMOVE_LOCK = "if no job is running on this output, remove it and run again"


def take_lock(plan: ExportPlan, beside: Store) -> ExportPlan:
    """Become the one writer of this output, or refuse with who holds it; returns `plan`
    with the lock's id (`ExportPlan.lock`), which becomes the run's (`start_record`)."""
    job = uuid.uuid4().hex
    holder = {"job": job, "host": socket.gethostname(), "pid": os.getpid(),
              "pid_namespace": _pid_namespace(), "boot": _boot_id(),
              "since": time.time(), "fingerprint": fingerprint(plan)}
    key = Sidecars.of(plan.output.uri).lock
    for _ in range(_ATTEMPTS):
        if _created(beside, key, json.dumps(holder).encode()):
            return replace(plan, lock=job)
        try:
            current = beside.get(key)
        except KeyError:
            continue  # released in the meantime: try to create it again
        owner = parse_record(current, beside, key, REMOVE_LOCK)
        if not lock_holder_dead(owner):
            raise held_error(plan.output.uri, owner, beside)
        beside.delete_if_unchanged(key, current)  # its driver died on this machine
    raise OutputError(f"output.uri: could not take the lock {beside.uri}/{key}")


def _created(beside: Store, key: str, data: bytes) -> bool:
    """put_if_absent, with a file system that refuses the lock file as one line (the
    writability check probes the same way, so this is a folder that changed since)."""
    try:
        return beside.put_if_absent(key, data)
    except OSError as e:
        raise OutputError(f"output.uri: cannot create the lock {beside.uri}/{key} "
                          f"({e.strerror or type(e).__name__})") from None


def held_error(uri: str, owner: dict[str, Any], beside: Store,
               then: str = "wait for it to finish", prefix: str = "output.uri: ") -> OutputError:
    """The refusal when a live job holds the lock of the output at `uri`: what to do
    `then`, and always how to get out when that job is dead on another machine (review H:
    verify and clean said only to wait, which never ends for a stale lock)."""
    return OutputError(
        f"{prefix}{uri} is being written by another job (pid {owner.get('pid')} on "
        f"{owner.get('host')}); {then}, or if it is dead, remove "
        f"{beside.uri}/{Sidecars.of(uri).lock}")


def live_holder(beside: Store, uri: str) -> dict[str, Any]:
    """The holder of the lock of the output at `uri` while it may be running (not a job
    of this machine that ended); {} otherwise."""
    holder = read_lock(beside, uri)
    return holder if holder and not lock_holder_dead(holder) else {}


def release_lock(plan: ExportPlan, beside: Store) -> None:
    """Remove this run's lock of the output (`plan` as `take_lock` returned it); a lock
    another run took meanwhile (this one's removed by hand: trial M) is that run's, and
    stays."""
    key = Sidecars.of(plan.output.uri).lock
    try:
        current = beside.get(key)
    except KeyError:
        return
    try:
        holder = parse_record(current, beside, key, REMOVE_LOCK)
    except OutputError:   # damaged: not another run's either; ours to remove
        holder = {"job": plan.lock}
    # by the lock's id, not by pid and host: a twin host's or another PID namespace's
    # driver can have this pid (review RV12)
    if holder.get("job") == plan.lock:
        # a plain delete: a conditional one is not in every S3 store (review H), and the
        # holder was just read
        beside.delete(key)
        beside.remove_made_folders()


def read_lock(beside: Store, uri: str) -> dict[str, Any]:
    """The holder recorded in the lock of the output at `uri`; {} when there is no lock."""
    key = Sidecars.of(uri).lock
    try:
        return parse_record(beside.get(key), beside, key, REMOVE_LOCK)
    except KeyError:
        return {}


def lock_holder_dead(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder is a process of this machine that no longer runs. A holder
    in another PID namespace (a container on this host with the same host name: trial AV,
    whose second run took a live run's output over) is not judged by its pid; one taken
    in another boot before this one began is dead."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    boot, booted = _boot_id(), _booted_at()
    since = holder.get("since")
    if holder.get("boot") and boot and holder["boot"] != boot:
        # taken before this boot: dead; else another machine of this name (a twin host,
        # whose PID namespace has the same id as ours: review RV12) that may well run
        return booted is not None and isinstance(since, (int, float)) and since < booted
    namespace = holder.get("pid_namespace")   # locks of earlier versions have none
    if namespace and namespace != _pid_namespace():
        return False
    return not _runs(holder["pid"])


def _runs(pid: int) -> bool:
    """Whether process `pid` runs: a zombie (killed, not yet reaped: trial AV's rerun 0.2 s
    after a `kill -9` was refused) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):   # no /proc (macOS): os.kill's answer
        return True


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), None where there is no /proc."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _booted_at() -> float | None:
    """When this machine booted (Unix seconds, Linux's `btime`), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            return next(float(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    """What tells this boot of the machine from the last (Linux), None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def lock_without_record(beside: Store, uri: str) -> dict[str, Any] | None:
    """The holder of the lock of the output at `uri` when there is a lock and no job record
    (a job in its first seconds, or one stopped then: trial AD), None otherwise; {} for a
    lock that names no holder."""
    if read_json(beside, Sidecars.of(uri).job_record):
        return None
    return _lock_left(beside, uri)


def _lock_left(beside: Store, uri: str) -> dict[str, Any] | None:
    """The holder of the lock of the output at `uri` (None when there is no lock, {} for
    one that names no holder)."""
    key = Sidecars.of(uri).lock
    if not beside.exists(key):
        return None
    holder = read_lock(beside, uri)
    return holder if holder or beside.exists(key) else None   # released meanwhile: none


def existing_record(beside: Store, uri: str) -> dict[str, Any]:
    """The job record of the output at `uri`, for the commands that work on a finished
    or killed export (verify, clean); OutputError when there is none: without it nothing
    in or beside the output can be told to be this tool's (`tile-clean /` would walk the
    whole file system)."""
    names = Sidecars.of(uri)
    record = read_json(beside, names.job_record)
    if record:
        return record
    holder = _lock_left(beside, uri)
    if holder and lock_holder_dead(holder):   # trial AD: "has just started" for ever
        raise OutputError(f"{uri}: no job record {names.job_record} beside it: the job that "
                          f"locked it (pid {holder.get('pid')} on this machine, dead) was "
                          f"stopped before it wrote one, so it wrote nothing else; its lock "
                          f"{names.lock} is left: tile-clean {uri} --remove removes it, and "
                          f"the job run again takes it over")
    if holder is not None:   # trial O: a job in its first seconds
        whose = f" (pid {holder.get('pid')} on {holder.get('host')})" if holder else ""
        raise OutputError(f"{uri}: a job has just started writing it (its lock "
                          f"{names.lock}{whose} is there, its job record not yet); run this "
                          f"again once that job has finished, or if it is dead, remove "
                          f"{beside.uri}/{names.lock}")
    if "://" not in uri and not os.path.exists(uri):   # trial N: a mistyped path
        raise OutputError(f"{uri}: no such file or folder")
    raise OutputError(f"{uri}: no job record {names.job_record} beside it; was it "
                      f"written by this tool?")
