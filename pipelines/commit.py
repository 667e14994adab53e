"""Commit on the driver: check the receipts, then write metadata last.

Until `commit` runs, the output holds chunks but no metadata, so no reader can open a
dataset there. `commit` first checks that every planned block returned exactly one
receipt covering exactly its own chunks, then writes the array metadata, then the group
metadata. The returned `CommitSummary` is the record a ledger or success file builds on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import OutputError
from .formats import format_module
from .plan import BlockReceipt, ExportPlan, OutputSpec
from .storage import Store


@dataclass(frozen=True)
class CommitSummary:
    """What was committed: counts, bytes and the value range, for reports and records."""

    uri: str
    dataset: str
    format: str
    shape: tuple[int, ...]
    blocks: int
    chunks_written: int
    chunks_skipped: int
    bytes_written: int
    min: float
    max: float
    task_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def check_output(output: OutputSpec, store: Store) -> None:
    """Refuse an output that cannot be written or already holds a committed dataset."""
    fmt = format_module(output.format)
    committed = [key for key, _ in fmt.array_documents(output.array)] + [fmt.ROOT_KEY]
    for key in committed:
        if store.exists(key):
            raise OutputError(
                f"output.uri: {store.uri} already holds a committed dataset ({key}); "
                f"choose another output.uri or remove the existing dataset")
    store.check_writable()


def commit(plan: ExportPlan, receipts: list[BlockReceipt], store: Store) -> CommitSummary:
    """Check that the receipts cover the plan exactly, then write metadata: arrays, then groups."""
    check_receipts(plan, receipts)
    fmt = format_module(plan.output.format)
    for key, document in fmt.array_documents(plan.array) + fmt.group_documents(plan.array):
        store.put(key, document)
    return summarize(plan, receipts)


def check_receipts(plan: ExportPlan, receipts: list[BlockReceipt]) -> None:
    """Every planned block has one receipt, and each receipt covers exactly its block's chunks."""
    planned = {t.index for t in plan.tasks}
    got = [r.block for r in receipts]
    missing, extra = planned - set(got), set(got) - planned
    if missing or extra or len(got) != len(set(got)):
        raise RuntimeError(
            f"receipts do not match the plan: {len(missing)} blocks missing, "
            f"{len(extra)} unexpected, {len(got) - len(set(got))} duplicated; nothing committed")
    grid = plan.output.block_grid
    for r in receipts:
        reported = sorted([c for c, _, _ in r.written] + list(r.skipped))
        if reported != sorted(grid.chunks_of(r.block)):
            raise RuntimeError(f"block {list(r.block)}: receipt does not list exactly its own "
                               f"chunks; nothing committed")


def summarize(plan: ExportPlan, receipts: list[BlockReceipt]) -> CommitSummary:
    return CommitSummary(
        uri=plan.output.uri, dataset=plan.array.path, format=plan.output.format,
        shape=plan.array.shape, blocks=len(receipts),
        chunks_written=sum(len(r.written) for r in receipts),
        chunks_skipped=sum(len(r.skipped) for r in receipts),
        bytes_written=sum(r.nbytes for r in receipts),
        min=min((r.min for r in receipts), default=0),
        max=max((r.max for r in receipts), default=0),
        task_seconds=sum(r.seconds for r in receipts),
    )

