"""Reusing the last registration when nothing it depends on has changed.

Registration takes minutes; an export rerun with other output settings (`make demo SET=…`)
would repeat it for the same answer. The stitching report records a fingerprint of what
decides the refined positions — the stage tile JSONs (or the project XML) as text, the
identity of each tile file registration reads (`tiles.identity`: size and modification
time; on S3, size and ETag), the `[stitching]` settings, the package version and the
registration's method (`registration.METHOD`) — and a checksum of every refined JSON it
wrote. A later run with the
same fingerprint whose refined JSONs are still as written reuses them;
`stitching.force = true` registers again. When only tile JSONs registration does not
measure changed (a timepoint or channel added, edited or removed), the positions the
report holds place them (`reapplicable`): no pair is measured again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipelines import __version__
from pipelines.config import JobConfig
from pipelines.registration import METHOD
from pipelines.storage import S3Options
from pipelines.storage.documents import read_if_there
from pipelines.tiles.identity import file_identities

if TYPE_CHECKING:
    from pipelines.registration.results import Target


def fingerprint_parts(config: JobConfig, target: Target, s3: S3Options | None,
                      identities: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What decides the refined positions, each part a digest (the report keeps them, so
    a later run can say which changed): the package version and the registration's
    method, the [stitching] settings and view selection, each stage JSON's text, the registered tiles' files' identities
    (`identities`: those this run took already, by path)."""
    settings = {k: v for k, v in asdict(config.stitching).items() if k not in ("enabled", "force")}
    sources = sorted({p for row in config.inputs for p in row})
    # the pixels registration measures: the registered channel's first timepoint (the
    # other rows' refined JSONs follow from their JSONs' text) — trial I: touching
    # another channel's tile registered all 476 pairs again for the same answer
    files = sorted({t.path for t in target.reference})
    return {
        "version": __version__,
        "method": METHOD,
        "settings": _json_digest({"settings": settings, "views": {k: list(v) for k, v in config.views}}),
        "inputs": {p: digest(read_if_there(p, s3) or b"") for p in sources},
        "tiles": _json_digest(file_identities(files, s3, identities)),
    }


def fingerprint(parts: dict[str, Any]) -> str:
    """One digest of `fingerprint_parts`."""
    return _json_digest(parts)


# the parts that say which code registered: a report without "method" is of a version
# before it was recorded, whose registration may have measured otherwise
MADE_BY = ("version", "method")

# a report of a version before the reports recorded what they were made of
EARLIER_REPORT = ("its report is an earlier version's, which does not record what the "
                  "registration was made of")


def why_again(last: dict | None, parts: dict[str, Any]) -> str:
    """Why the registration of `last` (a report) is not reused, from the parts its
    fingerprint was made of; '' when there was none."""
    if not last:
        return ""
    kept = last.get("reuse")
    then = kept.get("parts") if isinstance(kept, dict) else None
    if not isinstance(then, dict):   # trial T: registered again without a word
        return EARLIER_REPORT
    reasons = []
    if any(then.get(k) != parts[k] for k in MADE_BY):
        reasons.append("another version of this tool")
    if then.get("settings") != parts["settings"]:
        reasons.append("other [stitching] settings or input.views")
    new, changed, gone = _input_changes(then, parts)
    # a project's XML is no tile JSON (trial AS: "changed tile JSONs (dataset.xml)")
    def kind(paths: list[str]) -> str:
        return "project XML" if paths[0].lower().endswith(".xml") else "tile JSONs"
    for what, paths in (("new {}", new), ("changed {}", changed), ("{} no longer listed", gone)):
        if paths:
            what = what.format(kind(paths))
            more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
            reasons.append(f"{what} ({paths[0]}{more})")
    if then.get("tiles") != parts["tiles"]:
        reasons.append("the registered tiles' files changed (size or modification time)")
    return "; ".join(reasons) or "a refined file is not as it was written"


def _input_changes(then: dict[str, Any], parts: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The tile JSONs (or project) new, changed and no longer listed since the parts
    `then` of a report's fingerprint."""
    found = then.get("inputs")
    before: dict[str, Any] = found if isinstance(found, dict) else {}
    new = [p for p in parts["inputs"] if p not in before]
    changed = [p for p, d in parts["inputs"].items() if p in before and before[p] != d]
    gone = [p for p in before if p not in parts["inputs"]]
    return new, changed, gone


def changed_inputs(last: dict | None, parts: dict[str, Any]) -> tuple[str, ...]:
    """The tile JSONs new or changed since the registration of `last` (a report)."""
    kept = (last or {}).get("reuse")
    then = kept.get("parts") if isinstance(kept, dict) else None
    new, changed, _ = _input_changes(then if isinstance(then, dict) else {}, parts)
    return (*new, *changed)


def reapplicable(last: dict | None, parts: dict[str, Any], registered: str
                 ) -> dict[int, tuple[float, float, float]] | None:
    """The tile positions the registration of `last` (a report) found, when what it
    measured is unchanged — this tool's version and method, the [stitching] settings, the
    `registered` tile JSON's text and its tiles' files — and only other tile JSONs were
    added, edited or removed (another timepoint or channel): their refined JSONs follow
    from their own text and those positions, with no pair measured again (trial I: adding
    a timepoint registered every pair again). None when anything measured changed, or the
    report does not hold the positions."""
    kept = (last or {}).get("reuse")
    then = kept.get("parts") if isinstance(kept, dict) else None
    if not isinstance(then, dict) or any(then.get(k) != parts[k] for k in (*MADE_BY, "settings", "tiles")):
        return None
    inputs = then.get("inputs")
    if not isinstance(inputs, dict) or inputs.get(registered) != parts["inputs"].get(registered):
        return None
    results = (last or {}).get("tile_results")
    if not isinstance(results, list) or (kept or {}).get("positions") != positions_digest(results):
        return None   # positions that are not as the registration wrote them (review G)
    positions: dict[int, tuple[float, float, float]] = {}
    for row in results:
        try:
            index, (x, y, z) = row["index"], (float(v) for v in row["position"])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(index, int) or not all(math.isfinite(v) for v in (x, y, z)):
            return None
        positions[index] = (x, y, z)
    return positions or None


def positions_digest(tile_results: list) -> str:
    """The checksum the report keeps of its `tile_results` (the registered positions), so
    that `reapplicable` uses them only as the registration wrote them."""
    return _json_digest(tile_results)


def _json_digest(value: Any) -> str:
    return digest(json.dumps(value, sort_keys=True, default=str).encode())


def checksums(results: dict[str, bytes]) -> dict[str, str]:
    """The sha256 of each refined JSON (or stitched XML) written, by path."""
    return {path: digest(data) for path, data in results.items()}


def still_valid(report: dict[str, Any], current: str, s3: S3Options | None) -> bool:
    """Whether a stitching report's results may be reused: recorded with the `current`
    fingerprint, and every refined JSON it names still there with the bytes it wrote."""
    recorded = report.get("reuse") if isinstance(report, dict) else None
    if not isinstance(recorded, dict) or recorded.get("fingerprint") != current:
        return False
    results = recorded.get("results")
    if not isinstance(results, dict) or not results:
        return False
    return all(digest(read_if_there(path, s3) or b"") == written for path, written in results.items())


def digest(data: bytes) -> str:
    """The checksum the report records of a refined file (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()
