"""What a spark.master string names: the one parser behind every rule that depends on it
(the job check, the task slots planning sizes partitions for, which sessions are local,
the reachability check of standalone masters). Standard library only."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Spark's local forms: local, local[N], local[*], each with an optional ",maxFailures";
# local-cluster[workers, cores per worker, MiB per worker]. Any other form makes the JVM
# fail with a Java stack trace, so it is refused before.
# (Spark's own patterns, with the counts it cannot run with refused: 0 threads, workers,
# cores or MiB — local-cluster[0, …] waits for executors forever.)
_LOCAL = re.compile(r"local(?:\[(\*|0*[1-9]\d*)(?:\s*,\s*\d+)?\])?")
_LOCAL_CLUSTER = re.compile(r"local-cluster\[\s*(0*[1-9]\d*)\s*,\s*(0*[1-9]\d*)\s*,\s*0*[1-9]\d*\s*\]")

FORMS = ("local[N] (N ≥ 1), local[*], local-cluster[N, cores, MiB], spark://host:port, "
         "yarn or k8s://…")


class MasterFormError(ValueError):
    """A spark.master of no form Spark knows; the message says what was expected."""


@dataclass(frozen=True)
class Master:
    """A parsed spark.master."""

    kind: str  # "local", "local-cluster", "standalone", "yarn" or "k8s"
    slots: int | None = None  # tasks at once, where the string itself says (the local forms)
    addresses: tuple[tuple[str, int], ...] = ()  # a standalone master's host and port, standbys too

    @property
    def is_local(self) -> bool:
        """Executors on this machine, started by this driver (local and local-cluster)."""
        return self.kind in ("local", "local-cluster")


def parse_master(master: str) -> Master:
    """The Master `master` names; MasterFormError when Spark knows no such form (whether a
    standalone master answers is checked when Spark starts)."""
    local = _LOCAL.fullmatch(master)
    if local:
        count = local.group(1)
        return Master("local", (os.cpu_count() or 1) if count == "*" else int(count or 1))
    cluster = _LOCAL_CLUSTER.fullmatch(master)
    if cluster:
        return Master("local-cluster", int(cluster.group(1)) * int(cluster.group(2)))
    if master == "yarn":
        return Master("yarn")
    if master.startswith("k8s://"):
        return Master("k8s")
    if not master.startswith("spark://"):
        raise MasterFormError(f"expected {FORMS}")
    addresses = []
    for address in master.removeprefix("spark://").split(","):  # a standby master list
        host, _, port = address.strip().rpartition(":")
        if not host or not re.fullmatch(r"[0-9]+", port):
            raise MasterFormError("expected spark://host:port")
        addresses.append((host.removeprefix("[").removesuffix("]"), int(port)))   # [::1]
    return Master("standalone", addresses=tuple(addresses))


def is_local_master(master: str) -> bool:
    """Whether `master` (as Spark reports it, any string) runs executors on this machine."""
    try:
        return parse_master(master).is_local
    except MasterFormError:
        return False
