"""The driver: the export's flow, written once, over any executor.

Export: validate and plan (no executor yet) → check the output can be written and what it
holds → start the executor → (estimate the flatfield, register the tiles, match
intensities, when the job asks: `corrections`, `registering`) → take the output's lock →
check what the output holds (resume, or refuse) → record the job → run each stage's block
tasks → commit the metadata → compact the ledger → write the run report → release the lock.

The executor (`pipelines.execute.executor`) is the only part that differs between a test
(`LocalExecutor`) and a cluster (`pipelines.spark.SparkExecutor`, the default).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TextIO

import numpy as np

from pipelines.commit import confirm, endings, ledger, ownership
from pipelines.commit.completeness import check_complete, recorded_per_partition
from pipelines.commit.ledger import Recorded
from pipelines.commit.lock import release_lock, take_lock
from pipelines.commit.output import check_output, preflight, remove_dataset
from pipelines.commit.publish import CommitSummary, publish
from pipelines.commit.records import Sidecars, start_record
from pipelines.config import JobConfig
from pipelines.corrections import match_intensities, prepare_corrections
from pipelines.errors import (
    Interrupted,
    LedgerUnreadable,
    Terminated,
    cause,
    stopping_signal,
)
from pipelines.execute.block import BlockJob, blocks_run, execute_partition, stored_bytes
from pipelines.execute.executor import Batch, Executor
from pipelines.geometry import voxel_count
from pipelines.illumination.matched import Matching, made_anew
from pipelines.plan import (
    ExportPlan,
    PartitionTask,
    StageTasks,
    growth_warning,
    make_plan,
    plan_and_identities,
    tile_paths,
)
from pipelines.plan.tasks import quiet_collector
from pipelines.registering import StitchResult, stitch, stitching_checks
from pipelines.registration import results as stitching
from pipelines.report.console import stitch_summary
from pipelines.report.progress import Progress
from pipelines.report.summary import RunReport, write_run_report
from pipelines.running import executor_for
from pipelines.storage import Store, beside_store, open_store


@dataclass(frozen=True)
class ExportResult:
    """What `export` returns: the committed summary and the plan it ran, with the timings,
    resume count, registration and run report the console summary prints."""

    summary: CommitSummary
    plan: ExportPlan
    startup_seconds: float  # starting the executor (0 when it was running already)
    run_seconds: float  # planning, block tasks and commit
    master: str = ""  # where the blocks ran
    resumed: int = 0  # blocks an earlier run had already recorded in the ledger
    stitching: StitchResult | None = None  # when [stitching] enabled ran first
    report: RunReport | None = None  # the run report beside the dataset
    # seconds of the corrections' executor work, when it ran: flatfield_seconds, intensity_seconds
    corrections: dict[str, float] = field(default_factory=dict)

    @property
    def volume_bytes(self) -> int:
        """Uncompressed bytes of every level, channel and timepoint: what throughput counts."""
        out = self.plan.output
        voxels = sum(voxel_count(shape) for shape in out.shapes) * out.channels * out.timepoints
        return voxels * np.dtype(out.base.dtype).itemsize

    @property
    def computed_bytes(self) -> int:
        """`volume_bytes` of the voxels the blocks computed (`ExportPlan.computed_voxels`):
        the same for an output the tiles fill, less where they leave parts of it empty."""
        out = self.plan.output
        voxels = self.plan.computed_voxels() * out.channels * out.timepoints
        return voxels * np.dtype(out.base.dtype).itemsize


def export(config: JobConfig, executor: Executor | None = None, stream: TextIO = sys.stderr,
           overwrite: bool = False) -> ExportResult:
    """Validate, plan, run every block on the executor and commit; metadata only if all
    succeed.

    Without `executor`, Spark is started from the job's [spark] settings and stopped at
    the end (a session this process already runs is used instead, and left running). `overwrite` first removes whatever the output holds, a committed dataset
    included. With `[stitching] enabled`, the tiles are registered first and fused at the
    refined positions."""
    started = time.perf_counter()
    result: ExportResult | None = None
    try:
        with executor_for(config, executor) as running:
            result = _export_on(config, running, stream, overwrite, started)
    except (KeyboardInterrupt, Terminated) as e:
        if result is None:
            raise
        raise _after_commit(config.output.uri, e) from None   # while Spark stopped
    return result


def _after_commit(uri: str, stopped: BaseException) -> Interrupted:
    """`endings.after_commit` for the signal `stopped`."""
    return endings.after_commit(uri, stopping_signal(stopped))


def _export_on(config: JobConfig, running: Executor, stream: TextIO, overwrite: bool,
               started: float) -> ExportResult:
    """`export` on a running executor: corrections, stitching if enabled, the export."""
    made: list[_Checked] = []   # the checks, when flatfield estimation made them first
    config, flatfield_seconds = prepare_corrections(
        config, running, stream, lambda c: made.append(_check_before_work(c, overwrite)))
    corrections = {"flatfield_seconds": flatfield_seconds} if flatfield_seconds else {}
    # the checks made before estimation judged the job without the fields it estimated:
    # every problem again with them (the memory they take: review H), but for stitching's
    # answer, which they do not change. Made with the fields there were, they stand: no
    # second round of the tile files' checks, identities (on S3 a HEAD each) and fingerprints.
    # Made again, they are made before stitching and matching, whose fingerprints take the
    # identities they took
    checked = made[0] if made and not flatfield_seconds else None
    if checked is None and (config.stitching.enabled or flatfield_seconds):
        checked = _check_before_work(config, overwrite, made[0].registration if made else None)
    if not config.stitching.enabled:
        return _export(config, running, stream, overwrite, started, checked=checked,
                       corrections=corrections)
    assert checked is not None
    stitched = stitch(config, running, stream, check_files=False, checked=checked.registration)
    stream.write(stitch_summary(stitched) + "\n")
    # the refined JSONs name the tile files checked above
    result = _export(stitched.outcome.stitched(config), running, stream, overwrite,
                     started, stitched, checked=checked, corrections=corrections)
    return replace(result, stitching=stitched)


@dataclass(frozen=True)
class _Checked:
    """What the checks before an export's executor work found: the digest of the tile
    files' identities taken while checking them (`ExportPlan.tile_files`), when the job
    registers its tiles `stitching_checks`' answer, and when it matches intensities (and
    nothing else decided that work is to be made anew) what decides their coefficients.
    `identities`: those identities by path, for the coefficients' fingerprints when they
    are taken after stitching (a HEAD per tile on S3 otherwise)."""

    tile_files: str
    registration: stitching.LastRegistration | None
    matching: Matching | None = None
    identities: Mapping[str, Any] = field(default_factory=dict)


def _check_before_work(config: JobConfig, overwrite: bool,
                       registration: stitching.LastRegistration | None = None) -> _Checked:
    """Every check of an export made before its executor work (flatfield estimation,
    stitching: minutes), none of which depends on that work: the export's before its lock
    and of the output under it, and stitching's when it registers the tiles. A committed
    output is judged at the positions the export will have when the last registration is
    reused (or there is none): a rerun of a finished job is then told there is nothing
    to do (`preflight`). `registration`: stitching's answer, when the checks made it
    before."""
    # coefficients come after stitching; the identities of the tile files the plan took as
    # it checked them make the registration's and the coefficients' fingerprints too
    plan, identities = plan_and_identities(replace(config, intensity="none"))
    known = registration
    if config.stitching.enabled and known is None:
        known = stitching_checks(config, stitching.registration_target(config), identities)
    at, placed = plan, config
    if known is not None and known.earlier is not None:
        placed = known.earlier.stitched(config)
        at = make_plan(replace(placed, intensity="none"), check_files=False,
                       tile_files=plan.tile_files)
    store, beside = _output_location(config, plan)
    # [flatfield] enabled estimates the fields anew every run: minutes before it can tell
    # (review H), so a committed output is refused before that work, as with a registration
    # or intensities to be matched anew (trial X)
    anew, found = made_anew(placed, known is not None and known.earlier is None, at.tiles[0],
                            identities)
    preflight(at, store, beside, overwrite, positions_known=not anew)
    return _Checked(plan.tile_files, known, found, identities)


def _output_location(config: JobConfig, plan: ExportPlan, executor: Executor | None = None
                     ) -> tuple[Store, Store]:
    """The output's store and the store beside it, once the checks that need no lock
    pass: apart from the inputs, the environment (`executor`), writable, nothing of a
    user's under the names kept beside it."""
    ownership.check_inputs_apart(plan, input_paths(config, plan))
    store, beside = open_store(config.output.uri, plan.s3), beside_store(config.output.uri, plan.s3)
    if executor is not None:
        executor.check()  # environment problems before anything is written
    store.check_writable()  # a missing bucket or folder is one clear line
    ownership.check_sidecars(plan.output.uri, plan.output.layout, store, beside)
    ownership.check_not_anothers(plan.output.uri, beside, plan.s3)
    return store, beside


def _stitching_facts(stitched: StitchResult | None) -> dict[str, Any]:
    """What the run report says of the stitching that preceded the export."""
    if stitched is None:
        return {}
    kept = {k: v for k, v in stitched.outcome.report.items()
            if k not in ("pair_results", "tile_results", "unmatched_pairs")}
    return {"stitching": kept | {"report": stitched.outcome.report_path,
                                 "picture": stitched.outcome.picture_path,
                                 "reused": stitched.outcome.reused}}


def _timings(started: float, startup: float, commit_seconds: float,
             stitched: StitchResult | None, corrections: dict[str, float]
             ) -> tuple[float, dict[str, float]]:
    """The run's seconds without Spark start-up (stitching's and the corrections' included:
    ExportResult's run_seconds), and the summary's timings as the console prints them:
    Spark start-up (`startup`: wherever it happened — flatfield estimation, stitching or
    the export), the export alone, stitching alone, flatfield estimation and intensity
    matching alone (`corrections`, when they ran)."""
    run_seconds = time.perf_counter() - started - startup
    stitch_seconds = stitched.run_seconds if stitched else 0.0
    facts = {"startup_seconds": round(startup, 2),
             "run_seconds": round(run_seconds - stitch_seconds - sum(corrections.values()), 2),
             "commit_seconds": round(commit_seconds, 2)}
    if stitched:
        facts["stitching_seconds"] = round(stitch_seconds, 2)
    facts |= {key: round(seconds, 2) for key, seconds in corrections.items()}
    return run_seconds, facts


def _correction_facts(plan: ExportPlan) -> dict[str, Any]:
    """What the run report says of the corrections applied (trial J: neither the dataset
    nor its report said whether it was corrected, or with which fields)."""
    c = plan.correction
    if c is None:
        return {}
    facts: dict[str, Any] = {}
    if c.flatfield:
        facts["flatfield"] = [{"folder": f, "fields_digest": d} for f, d in zip(c.flatfield, c.digests)]
    if c.intensity:
        facts["intensity"] = [{"tiles": len(found), "gain_range": [min(g for _, g, _ in found),
                                                                   max(g for _, g, _ in found)]}
                              for found in c.intensity]
    return {"corrections": facts}


def _export(config: JobConfig, executor: Executor, stream: TextIO, overwrite: bool,
            started: float, stitched: StitchResult | None = None,
            checked: _Checked | None = None, corrections: dict[str, float] | None = None) -> ExportResult:
    """The export of `config` (its tile files checked already when `checked` says what
    the checks found; `corrections`: the seconds flatfield estimation took, when it ran)."""
    corrections = dict(corrections or {})
    if config.intensity == "match":   # measured at the positions fused: after stitching
        seconds = match_intensities(config, executor, stream, checked.matching if checked else None,
                                    checked.identities if checked else None)
        if seconds:
            corrections["intensity_seconds"] = seconds
    if checked is None:
        plan, identities = plan_and_identities(config)
    else:   # the identities the checks took, by path, name the files that change (trial AP)
        plan, identities = make_plan(config, check_files=False, tile_files=checked.tile_files), \
            dict(checked.identities)
    store, beside = _output_location(config, plan, executor)
    plan = take_lock(plan, beside)
    try:
        if overwrite:
            removed = remove_dataset(plan, store, beside)
            stream.write(f"--overwrite: removed {removed} objects an earlier run wrote there\n")
        result = _export_locked(plan, store, beside, executor, stream, started, stitched,
                                corrections, identities)
    except BaseException as e:
        endings.release_after(plan, beside, e)
        raise
    try:
        release_lock(plan, beside)
    except Exception as e:   # the dataset is committed: a lock left is the next run's to take
        stream.write(f"warning: the lock {Sidecars.of(plan.output.uri).lock} could not be "
                     f"removed ({cause(e)}); the next run on this machine takes it over\n")
    return result


def input_paths(config: JobConfig, plan: ExportPlan) -> list[str]:
    """Every file and container the job reads: tile JSONs or the project, tile files."""
    paths = {p for row in config.inputs for p in row}
    paths |= set(tile_paths(plan.tiles))
    return sorted(paths)


def _export_locked(plan: ExportPlan, store: Store, beside: Store, executor: Executor,
                   stream: TextIO, started: float, stitched: StitchResult | None,
                   corrections: dict[str, float], identities: Mapping[str, Any]) -> ExportResult:
    """The export while this job holds the output's lock; `identities`: the tile files'
    identities the run began with, by path."""
    began = time.time()
    plan = check_output(plan, store, beside, stream)
    out = plan.output
    growth = growth_warning(plan.computed_voxels() * out.channels * out.timepoints, plan.tiles)
    if growth:   # said before the first task: Ctrl-C costs nothing yet
        stream.write(f"warning: {growth}\n")
    if not plan.rerun:   # before the record: a Spark that cannot start leaves nothing (trial AF)
        executor.start()
    # a rerun starts Spark with its first task (`Executor.run`): one whose blocks are all
    # recorded commits without it (trial AA: 5-13 s of start-up to run 0 blocks)
    plan = start_record(plan, beside)
    phase = "run"
    try:
        resumed = _run_stages(plan, store, beside, executor, stream)
        committing = time.perf_counter()
        recorded = ledger.read_parts(beside, ledger.folder(plan))
        check_complete(plan, recorded)
        assert recorded.objects is not None
        confirm.check_before_commit(plan, recorded.objects, store)
        confirm.check_tiles_unchanged(plan, identities)
        phase = "commit"
        summary = publish(plan, recorded, store, beside)
        phase = "ledger"
        assert recorded.objects is not None
        ledger.compact(beside, ledger.folder(plan), recorded.objects)
        commit_seconds = time.perf_counter() - committing
    except Exception as e:  # every failure of the run: one line, and the record says failed
        raise endings.failed(plan, beside, e, phase) from None
    except (KeyboardInterrupt, Terminated) as e:   # Ctrl-C, a scheduler's SIGTERM
        raise endings.interrupted(plan, beside, stopping_signal(e)) from None
    run_seconds, timings = _timings(started, executor.startup_seconds, commit_seconds, stitched,
                                    corrections)
    # master None: Spark never started (every block recorded by an earlier run)
    facts = {"master": executor.master or None, **timings, "resumed_blocks": resumed,
             **_stitching_facts(stitched), **_correction_facts(plan)}
    try:
        report = _report(plan, summary, recorded, store, beside, began, facts, stream,
                         stitched.outcome.report if stitched else None)
    except (KeyboardInterrupt, Terminated) as e:
        raise _after_commit(plan.output.uri, e) from None
    return ExportResult(summary, plan, timings["startup_seconds"], run_seconds, executor.master,
                        resumed, report=report, corrections=corrections)


# Partitions handed to the executor in one batch: bounds the task list the driver and
# Spark's scheduler hold at once, however many blocks the stage has.
WAVE = 20_000


def _run_stages(plan: ExportPlan, store: Store, beside: Store, executor: Executor,
                stream: TextIO) -> int:
    """Every stage's blocks not yet in the ledger, in stage order; the blocks an earlier
    run had recorded (and whose objects are still there as recorded)."""
    base, tasks = ledger.folder(plan), plan.task_plan
    recorded = _trusted(plan, store, beside, stream) if plan.rerun else Recorded()
    if recorded.block_count:
        stream.write(f"resuming: {recorded.block_count} of {tasks.blocks} blocks are already "
                     f"recorded\n")
    job = BlockJob(replace(plan, tasks=None), base, uuid.uuid4().hex)  # tasks travel one by one
    for n, stage in enumerate(plan.stages):
        if len(plan.stages) > 1:
            last = stage.first + stage.count - 1
            stream.write(f"stage {n + 1}/{len(plan.stages)}: "
                         f"{f'level {last}' if last == stage.first else f'levels {stage.first}–{last}'}\n")
        pending, blocks = _pending(tasks.stages[n], n, tasks.timepoints, recorded)
        with quiet_collector():
            run_partitions(executor, job, _waves(tasks.stages[n], pending), blocks, stream)
    return recorded.block_count


def _trusted(plan: ExportPlan, store: Store, beside: Store, stream: TextIO) -> Recorded:
    """What an earlier run recorded, after confirming its objects are in the output as
    recorded (`confirm`; one listing of the container, or every object read with resume.verify =
    "checksum"): the parts of any that are not are dropped, and their blocks run again."""
    base = ledger.folder(plan)
    damaged: list[LedgerUnreadable] = []
    recorded = ledger.read_parts(beside, base, objects=True, damaged=damaged)
    if damaged:   # trial U: the run stopped on it, with no way out but deleting it by hand
        more = ledger.drop_damaged_parts(beside, base, damaged)
        stream.write(f"resume: {len(damaged)} part(s) of the ledger cannot be read ({damaged[0]}); "
                     f"removed{f', with the parts of the later levels ({more} blocks)' if more else ''}"
                     f": their blocks run again\n")
        recorded = ledger.read_parts(beside, base, objects=True)
    assert recorded.objects is not None
    began = time.perf_counter()
    changed = confirm.changed_objects(recorded.objects, store, confirm.resume_listing(store),
                                      plan.resume_verify)
    seconds = time.perf_counter() - began
    if not changed:
        return recorded
    dropped = ledger.drop_parts_holding(beside, base, {c.key for c in changed})
    # a part records a task's blocks together, so all of them run again (trial X: "the 16
    # blocks that wrote them" for one changed object)
    stream.write(f"resume: {confirm.summary(changed, len(recorded.objects))}; the "
                 f"{sum(dropped.values())} blocks recorded with them (the ledger parts of "
                 f"their tasks, and of the later levels above them) run again "
                 f"({plan.resume_verify} check: {seconds:.1f} s)\n")
    return ledger.read_parts(beside, base, objects=False)


Pending = list[tuple[int, np.ndarray, dict[int, frozenset]]]


def _pending(stage: StageTasks, n: int, timepoints: int, recorded: Recorded) -> tuple[Pending, int]:
    """Per timepoint: the partitions (run positions) with blocks left to run, and the
    blocks already recorded in those cut short; and the blocks left in all."""
    pending, left_blocks = [], 0
    for t in range(timepoints):
        got = recorded.blocks.get((n, t))
        counts, position = recorded_per_partition(stage, got)
        left = np.flatnonzero(counts < stage.counts)
        cut_short = np.flatnonzero((counts > 0) & (counts < stage.counts))
        done = {int(k): frozenset(map(tuple, got[position == k].tolist()))
                for k in cut_short} if got is not None else {}
        left_blocks += int((stage.counts[left] - counts[left]).sum())
        pending.append((t, left, done))
    return pending, left_blocks


def _waves(stage: StageTasks, pending: Pending) -> Iterator[list[PartitionTask]]:
    """The pending partitions, built lazily, WAVE at a time."""
    wave: list[PartitionTask] = []
    for t, left, done in pending:
        for part in stage.partitions(t, left, done):
            wave.append(part)
            if len(wave) == WAVE:
                yield wave
                wave = []
    if wave:
        yield wave


def run_partitions(executor: Executor, job: BlockJob, waves: Iterable[list[PartitionTask]],
                   blocks: int, stream: TextIO = sys.stderr) -> None:
    """Run partitions on the executor, wave by wave, with one progress line for `blocks`
    blocks; each task records its blocks in the ledger (`job.ledger`) as they finish."""
    if not blocks:
        return
    executor.start()   # before the progress clock: a rerun's Spark starts here (review)
    progress = Progress(blocks, stream)
    done = stored = 0
    for wave in waves:
        count = sum(p.blocks - len(p.done) for p in wave)
        batch = Batch(execute_partition, job, wave, f"compute and write {count} blocks",
                      size=stored_bytes, units=blocks_run)
        summaries = executor.run(batch, partial(_after, progress, done, stored))
        done += sum(s.blocks for s in summaries)
        stored += sum(s.nbytes for s in summaries)
    progress.finish()


def _after(progress: Progress, done: int, stored: int, more: int, nbytes: int) -> None:
    """Progress of a wave, after `done` blocks and `stored` bytes of the waves before it."""
    progress(done + more, stored + nbytes)


def _report(plan: ExportPlan, summary: CommitSummary, recorded: Recorded,
            store: Store, beside: Store, began: float, facts: dict[str, Any],
            stream: TextIO, stitching: dict | None = None) -> RunReport | None:
    """The run report; a warning instead when it cannot be written (the dataset is
    committed: a picture must not fail the job)."""
    try:
        return write_run_report(plan, summary, recorded.finished, store, beside, began, facts,
                                stitching)
    except Exception as e:
        stream.write(f"warning: the run report could not be written: {cause(e)}\n")
        return None
