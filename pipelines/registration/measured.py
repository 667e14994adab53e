"""The record of the pairs a registration not yet done has measured, beside its report
(`<report>-pairs.json`): a run stopped or failed midway keeps what its finished rounds
measured, and the next run of the same registration (same inputs and settings: the
fingerprint) measures only the rest. Written whole each time, one atomic put."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipelines.geometry import triple
from pipelines.registration.pairs import PairShift
from pipelines.storage import S3Options, beside_store
from pipelines.storage import uri as uris
from pipelines.storage.documents import json_if_readable, json_if_there

Measured = dict[tuple[int, int], PairShift | None]   # None: the pair has no match


@dataclass(frozen=True)
class PairRecord:
    """Where a registration keeps the pairs measured so far, and of what (the fingerprint
    of its inputs and settings)."""

    path: str
    fingerprint: str
    s3: S3Options | None
    resume: bool = True   # use what the record holds (not with stitching.force)

    @staticmethod
    def beside(report: str, fingerprint: str, s3: S3Options | None, resume: bool = True
               ) -> PairRecord:
        """The record of the registration whose report is at `report`."""
        return PairRecord(uris.sibling(report, "-pairs.json"), fingerprint, s3, resume)

    def measured_before(self) -> Measured:
        """The pairs an interrupted registration of the same inputs and settings measured;
        {} when there is no such record, or it is damaged or of other inputs, or the
        record is not to be resumed."""
        doc = json_if_readable(self.path, self.s3) if self.resume else None
        if not isinstance(doc, dict) or doc.get("fingerprint") != self.fingerprint:
            return {}
        found: Measured = {}
        try:
            for row in doc["pairs"]:
                a, b = int(row["a"]), int(row["b"])
                found[(a, b)] = None if row.get("measured") is None else PairShift(
                    a, b, triple(float(v) for v in row["stage"]),
                    triple(float(v) for v in row["measured"]), float(row["score"]), int(row["overlap"]))
        except (KeyError, TypeError, ValueError):
            return {}
        return found

    def measured_otherwise(self) -> int:
        """How many pairs the record holds when an interrupted registration of other inputs
        or settings measured them (0 when there is none): this registration does not resume
        them, and its first round replaces the record."""
        doc = json_if_readable(self.path, self.s3)
        if not isinstance(doc, dict) or doc.get("fingerprint") == self.fingerprint:
            return 0
        return len(doc["pairs"]) if isinstance(doc.get("pairs"), list) else 0

    def keep(self, found: Measured) -> None:
        """Record the pairs measured so far."""
        rows = [{"a": a, "b": b} if shift is None else asdict(shift) for (a, b), shift in found.items()]
        data = (json.dumps({"fingerprint": self.fingerprint, "pairs": rows}) + "\n").encode()
        beside_store(self.path, self.s3).put(uris.name(self.path), data)

    def drop(self) -> None:
        """Remove the record once the registration's results are written, if it is this
        registration's: a project's other selection of views, or another channel, keeps
        its own (review G)."""
        try:
            doc = json_if_there(self.path, self.s3)
        except Exception:   # unreadable: no registration can use it
            doc = {"fingerprint": self.fingerprint}
        if isinstance(doc, dict) and doc.get("fingerprint") == self.fingerprint:
            beside_store(self.path, self.s3).delete(uris.name(self.path))
