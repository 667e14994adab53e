"""What tells a changed tile file from the same one, without reading it.

Two decisions rest on it: whether the last registration may be reused
(`registration.reuse`) and whether an unfinished export may be continued (the export's
fingerprint, `commit.records`): a rerun after a tile file changed must not keep blocks made
from the old pixels. A file's identity is its size and modification time (ns) on a file
system, its size and ETag on S3 (`Store.identity`); a container's prefix on S3 (N5, Zarr)
has none (None), and a local container folder's is the folder's own, which writes inside
its arrays do not change.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines.storage import S3Options, beside_store
from pipelines.storage import uri as uris

# HEAD requests in flight at once when the tiles are on S3: one after another, 10 000
# tiles at 20-50 ms a request would take minutes before a run could start
STAT_THREADS = 32


def file_identities(paths: list[str], s3: S3Options | None,
                    known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`file_identity` of every path, by path; S3 objects are asked about concurrently.
    `known`: identities this run took already (the check before its work opened every
    tile file): a path there is not asked again (at 100 000 tiles on S3, each round is
    100 000 HEAD requests)."""
    known = known or {}
    asked = [p for p in paths if p not in known]
    if not any(uris.is_remote(p) for p in asked):
        found = {p: file_identity(p, s3) for p in asked}
    else:
        with ThreadPoolExecutor(STAT_THREADS) as pool:
            found = dict(zip(asked, pool.map(lambda p: file_identity(p, s3), asked)))
    return {p: known[p] if p in known else found[p] for p in paths}


def file_identity(path: str, s3: S3Options | None) -> Any:
    """[size, modification time in ns] of a local file, [size, ETag] of an S3 object;
    None when there is none (a missing file, a container's prefix on S3)."""
    if uris.is_remote(path):
        try:
            return list(beside_store(path, s3).identity(uris.name(path)))
        except KeyError:   # a container's prefix (N5, Zarr), not one object
            return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def identities_digest(identities: dict[str, Any]) -> str:
    """One short digest of every file's identity, independent of their order: what a plan
    carries instead of one entry per tile (plans stay compact at 100 000 tiles)."""
    return hashlib.sha256(_canonical(sorted(identities.items())).encode()).hexdigest()[:32]


def same_identity(one: Any, other: Any) -> bool:
    """Whether two identities of one file are the same: as `identities_digest` compares
    them (a list read back from JSON equals the tuple a check took)."""
    return _canonical(one) == _canonical(other)


def _canonical(value: Any) -> str:
    """The one text identities are compared by (tuples and lists alike)."""
    return json.dumps(value, default=str)
