"""The stitching flow, over any executor: find the overlapping pairs → measure each on the
executor, in recorded rounds → solve on the driver → write the refined tile JSONs (or
the stitched XML), the report and the picture (`pipelines.registration.results`). A
registration whose inputs and settings are unchanged is reused instead
(`pipelines.registration.reuse`). `driver.export` runs it first when [stitching] is
enabled; `tile-stitch` runs it alone."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from pipelines.commit import endings
from pipelines.config import JobConfig
from pipelines.errors import BlockFailed, Interrupted, Terminated, signals_deferred, stopping_signal
from pipelines.execute.executor import Batch, Executor
from pipelines.registration import results as stitching
from pipelines.registration import reuse, solve
from pipelines.registration.measured import PairRecord
from pipelines.registration.pairs import PairJob, PairShift, measure_pair
from pipelines.report.progress import Progress
from pipelines.running import executor_for
from pipelines.tiles import check_tile_files


@dataclass(frozen=True)
class StitchResult:
    """What `stitch` returns: the registration and how long it took."""

    outcome: stitching.StitchOutcome
    startup_seconds: float  # starting the executor (0 when it was running already)
    run_seconds: float


def stitch(config: JobConfig, executor: Executor | None = None, stream: TextIO = sys.stderr,
           check_files: bool = True, checked: stitching.LastRegistration | None = None
           ) -> StitchResult:
    """Measure every overlapping pair on the executor, solve on the driver, write the
    refined tile JSONs, the report and the picture (see `pipelines.registration.results`).
    `checked`: what `stitching_checks` found, when the caller made them."""
    started = time.perf_counter()
    target = stitching.registration_target(config)
    reference = target.reference
    if check_files and not config.is_project:  # a project's views were opened as it was read
        check_tile_files([reference], config.s3_options())
    if checked is None:
        checked = stitching_checks(config, target)
    if checked.earlier is not None:
        # pairs an interrupted stitching.force run of the same registration measured are
        # of no use once it is reused (trial V: its record stayed on S3)
        PairRecord.beside(stitching.report_path(config), reuse.fingerprint(checked.parts),
                          config.s3_options()).drop()
        return StitchResult(checked.earlier, 0.0, time.perf_counter() - started)
    if checked.positions is not None:   # only tile JSONs registration does not measure changed
        last = checked.last or {}
        # what is placed: the tile JSONs new or edited, else (some only removed) all the others
        applied = reuse.changed_inputs(last, checked.parts) or tuple(
            p for row in config.inputs for p in row if p != reference.source)
        doc_reuse = {"fingerprint": reuse.fingerprint(checked.parts), "parts": checked.parts,
                     "positions": last["reuse"]["positions"]}
        placed = stitching.reapply(config, target, checked.positions, last, doc_reuse, applied)
        return StitchResult(placed, 0.0, time.perf_counter() - started)
    why = "stitching.force" if config.stitching.force else reuse.why_again(checked.last, checked.parts)
    if why:   # the last registration is not reused: say why (trial I)
        stream.write(f"stitching: registering again: {why}\n")
    job = PairJob(reference, target.options, config.s3_options())
    pairs = list(target.pairs)
    # stitching.force measures every pair again: it is the way out where the fingerprint
    # cannot see changed pixels (review G), so it does not resume a record either
    record = PairRecord.beside(stitching.report_path(config), reuse.fingerprint(checked.parts),
                               config.s3_options(), resume=not config.stitching.force)
    with executor_for(config, executor) as running:
        startup = running.start()
        began = time.perf_counter()
        shifts, resumed = _measure_pairs(running, job, pairs, stream, record)
        seconds = time.perf_counter() - began
    found = [s for s in shifts if s is not None]
    unmatched = [p for p, s in zip(pairs, shifts) if s is None]
    # a stop before the writes keeps every pair measured (the last round too) for the next
    # run; one after them leaves a registration the next run reuses
    outcome, doing = None, "while solving the registration"
    try:
        solution = solve({t.index: t.position for t in reference}, found,
                         config.stitching.min_score, config.stitching.max_residual, target.frame.exact)
        doc = stitching.report(reference, solution, unmatched, config, seconds, resumed)
        # overlapping tiles placed by affines of other linear parts (angles): not measured
        doc["pairs"]["skipped_linear_parts_differ"] = target.frame.skipped
        doc["reuse"] = {"fingerprint": reuse.fingerprint(checked.parts), "parts": checked.parts,
                        "positions": reuse.positions_digest(doc["tile_results"])}
        doing = "while drawing the registration"
        drawn = stitching.draw_results(target, solution, doc, config)
        doing = "before the registration was written"
        # the refined files, the report and the picture belong together: a stop between
        # them left new positions beside the last registration's picture, and a report a
        # later run reuses (trial AH); held back until they are all written
        with signals_deferred():
            outcome = stitching.write_results(config, target, solution, doc, drawn)
            record.drop()
    except (KeyboardInterrupt, Terminated) as e:
        name = signal.Signals(stopping_signal(e)).name
        if outcome is not None:
            raise Interrupted(f"interrupted by {name} once the registration was written "
                              f"({outcome.report_path}); the next run reuses it",
                              stopping_signal(e)) from None
        raise Interrupted(f"interrupted by {name} {doing}"
                          f"{_kept(dict(zip(pairs, shifts)), pairs, record)}",
                          stopping_signal(e)) from None
    return StitchResult(outcome, startup, time.perf_counter() - started - startup)


def stitching_checks(config: JobConfig, target: stitching.Target,
                     identities: Mapping[str, Any] | None = None) -> stitching.LastRegistration:
    """What registering `target` checks before any pair is measured: whether the last
    registration still holds, or its positions do (`stitching.last_registration`: nothing
    else to check when it does); else the results must be writable and replaceable, and
    some pair must be there to measure (`Target.pairs`), unless only tile JSONs it does
    not measure changed. One line each, nothing written. `identities`: the tile files'
    identities this run took already, by path."""
    checked = stitching.last_registration(config, target, identities)
    if checked.earlier is None:
        stitching.check_results_writable(config)
        stitching.check_results_replaceable(config)
        if checked.positions is None:
            target.pairs   # noqa: B018 - found here, and refused when there are none
    return checked


PAIR_ROUNDS = 10        # a registration measures its pairs in this many rounds, recording each
PAIRS_PER_ROUND = 64    # at least: a round's wait for its slowest pair is paid once per round


def _measure_pairs(executor: Executor, job: PairJob, pairs: list[tuple[int, int]],
                   stream: TextIO, record: PairRecord) -> tuple[list[PairShift | None], int]:
    """measure_pair for every pair, one task each; None where nothing matched; and how
    many of them an interrupted run had measured. The pairs
    are measured in rounds, each recorded (`PairRecord.keep`) so that a run
    stopped or failed midway loses at most its current round, and the next run of the
    same registration measures only the rest (trial J: a SIGTERM at pair 395 of 904 lost
    them all, and said the run had not started)."""
    if not pairs:
        return [], 0
    wanted = set(pairs)
    found = {p: s for p, s in record.measured_before().items() if p in wanted}
    if found:
        stream.write(f"stitching: resuming: {len(found)} of {len(pairs)} pairs were measured by "
                     f"an interrupted run ({record.path})\n")
    elif record.resume:   # trial L: a changed setting discarded them without a word
        other = record.measured_otherwise()
        if other:
            stream.write(f"stitching: not resuming the {other} pairs an interrupted run measured "
                         f"with other inputs or settings ({record.path}): every pair is measured "
                         f"again\n")
    todo = [p for p in pairs if p not in found]
    size = max(PAIRS_PER_ROUND, -(-len(todo) // PAIR_ROUNDS))
    progress = Progress(len(pairs), stream, unit="pairs", show_bytes=False, done_before=len(found))
    try:
        for first in range(0, len(todo), size):
            chunk, before = todo[first:first + size], len(found)
            batch = Batch(measure_pair, job, chunk, f"register {len(chunk)} tile pairs")
            found.update(zip(chunk, executor.run(batch, partial(_counted_from, progress, before))))
            # the last round's too: a stop while solving keeps them (trial AH)
            record.keep(found)
    except BlockFailed as e:
        raise endings.with_detail(BlockFailed(f"registration failed: {e}{_kept(found, pairs, record)}"),
                                  e.detail) from None
    except (KeyboardInterrupt, Terminated) as e:
        signum = stopping_signal(e)
        raise Interrupted(f"interrupted by {signal.Signals(signum).name} while registering"
                          f"{_kept(found, pairs, record) or ': nothing was written'}", signum) from None
    progress.finish()
    return [found[p] for p in pairs], len(pairs) - len(todo)


def _counted_from(progress: Progress, before: int, done: int, nbytes: int) -> None:
    """A round's progress, counted on from the pairs measured `before` it."""
    progress(before + done, nbytes)


def _kept(found: dict, pairs: list, record: PairRecord) -> str:
    """What an interrupted or failed registration leaves for the next run, '' if nothing."""
    if not found:
        return ""
    # stitching.force measures every pair again (trial AH: the promise was never kept)
    which = " without stitching.force" if not record.resume else ""
    return (f"; {len(found)} of {len(pairs)} pairs measured are kept in {record.path}: the "
            f"next run of this registration{which} measures only the rest")
