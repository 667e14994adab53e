"""What the output may hold before a run starts, and clearing it.

Writability is checked before the lock is taken (`Store.check_writable`); these checks run
once this job holds the lock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TextIO

from pipelines.commit import ledger
from pipelines.commit.lock import held_error, live_holder
from pipelines.commit.ownership import (
    METADATA_NAMES,
    check_not_anothers,
    check_sidecars,
    foreign_count,
    foreign_files,
    remove_owned,
)
from pipelines.commit.records import (
    Sidecars,
    changed_parts,
    commit_began,
    earlier_version,
    fingerprint,
    output_settings,
    read_json,
)
from pipelines.errors import AlreadyDone, NoAnswer, OutputError, cause
from pipelines.formats import format_module
from pipelines.plan import ExportPlan
from pipelines.plan.output import OutputSpec
from pipelines.storage import S3Options, Store, beside_store, open_store


def check_output(plan: ExportPlan, store: Store, beside: Store,
                 stream: TextIO | None = None) -> ExportPlan:
    """Refuse an output that already holds a committed dataset (of this format or any
    other), or holds files that are not from this job.

    An unfinished run of the same job (same fingerprint) is continued, a commit it began
    included: the plan comes back marked `rerun`. An unfinished run of this output with
    other settings or tile files is discarded, saying so on `stream`."""
    record = read_json(beside, Sidecars.of(plan.output.uri).job_record)
    _refuse_committed(plan, store, record)
    leftover = next(iter(store.list()), None)
    if leftover is None:
        return plan
    if not record:
        raise _foreign_files(store.uri, leftover)
    if record.get("fingerprint") != fingerprint(plan):
        # our own unfinished run of other inputs: start over (only what is provably ours);
        # said aloud, as hours of recorded work may go
        remove_owned(store, "an unfinished run of this output, which this job would discard",
                     lambda: stream.write(f"{discard_notice(plan, beside, record)}\n")
                     if stream is not None else None)
        return plan
    return replace(plan, rerun=True)


def discard_notice(plan: ExportPlan, beside: Store, record: dict[str, Any]) -> str:
    """The line that says an unfinished run is discarded: how it differs, and how much of
    it its ledger had recorded (of the blocks its job record planned, when it says)."""
    recorded = ledger.read_parts(beside, Sidecars.of(plan.output.uri).ledger(
        str(record.get("fingerprint"))), objects=False, damaged=[]).block_count   # what can be read
    planned = record.get("blocks")
    done = f"{recorded} of {planned}" if isinstance(planned, int) else f"{recorded}"
    return (f"discarding an unfinished run {_how_it_differs(record, plan)} ({done} blocks "
            f"were recorded); every block is computed again")


def _how_it_differs(record: dict[str, Any], plan: ExportPlan) -> str:
    """An unfinished run of `record` as a message names it beside `plan`'s."""
    changed = changed_parts(record, plan)
    if changed is None:   # a record from before the parts were kept: it cannot tell
        return ("made by an earlier version of this tool or with other settings or tile files "
                "(its job record does not say which)")
    if earlier_version(record):   # its voxels may differ whatever its settings (trial AK)
        return "made by an earlier version of this tool, whose voxels may differ"
    if not changed:
        return "with other settings or tile files"
    made = [what for part, what in (("settings", "other settings"),
                                    ("corrections", "other flatfield fields or intensity coefficients"))
            if part in changed]
    said = f"with {' and '.join(made)}" if made else ""
    if "tile_files" in changed:
        said += (", " if said else "") + "made from other tile files or before they changed"
    return said


def preflight(plan: ExportPlan, store: Store, beside: Store, overwrite: bool,
              positions_known: bool = False) -> None:
    """The read-only checks of the output, for a job that runs other Spark work first
    (stitching, flatfield estimation, intensity matching): a committed dataset (unless
    `overwrite`), files that are not from this pipeline, a live job's lock. `check_output`
    repeats them once the lock is held.

    An unfinished commit is refused here when its tile files or its output settings
    (`records.output_settings`) differ, both known before that work; whether the rest is
    this job's — a rerun finishes it — depends on the positions and coefficients the work
    is about to give, which `plan` (made before it) does not hold, so `check_output`
    decides that afterwards. With `positions_known` (no registration or the last one
    reused, and no fields estimated anew: `plan` is at the positions the run will have)
    a committed dataset that differs at most in the corrections is left to `check_output`
    too: the corrections are reused when they are as they were, and then a rerun of a
    finished job is told there is nothing to do."""
    record = read_json(beside, Sidecars.of(plan.output.uri).job_record)
    if not overwrite:
        _refuse_committed(plan, store, record, settings_known=False,
                          positions_known=positions_known)
    leftover = next(iter(store.list()), None)
    if leftover is not None and not record:
        if overwrite:
            raise _not_ours_to_replace(plan.output.uri, store, leftover)
        raise _foreign_files(store.uri, leftover)
    holder = live_holder(beside, plan.output.uri)
    if holder:
        raise held_error(plan.output.uri, holder, beside)


def _refuse_committed(plan: ExportPlan, store: Store, record: dict,
                      settings_known: bool = True, positions_known: bool = False) -> None:
    """OutputError if the output holds metadata, unless it is this job's own commit that a
    kill cut short (`records.commit_began`, same fingerprint): a rerun finishes that one;
    AlreadyDone if it is this job's committed dataset.
    Without `settings_known` (a plan made before stitching or intensity matching) only an
    unfinished commit of other tile files or other `records.output_settings` is refused:
    the rest is told afterwards; so is a committed dataset that may differ only in the
    corrections, when `positions_known` (see `preflight`)."""
    began = commit_began(record)
    if began and record.get("fingerprint") == fingerprint(plan):
        return
    changed = changed_parts(record, plan)
    if not settings_known and positions_known and record.get("status") == "committed" \
            and changed is not None and changed <= {"corrections"}:
        return
    if began and not settings_known:
        if changed is not None and "tile_files" in changed:
            changed = {"tile_files"}
        elif record.get("output_settings", output_settings(plan)) == output_settings(plan):
            return   # this job's, or not: the positions and coefficients will tell
    for key in _metadata_keys(plan.output):
        if not store.exists(key):   # one look per key (a HEAD on S3)
            continue
        if began and changed == {"tile_files"}:
            raise OutputError(
                f"output.uri: {store.uri} holds an unfinished commit of this job made before "
                f"its tile files changed ({key}): its chunks are of the files as they were; "
                f"pass --overwrite to replace it with an export of the files as they are")
        if began and earlier_version(record):   # review of trial AK
            raise OutputError(
                f"output.uri: {store.uri} holds an unfinished commit of an earlier version of "
                f"this tool ({key}); finish it with that version, or pass --overwrite to "
                f"replace it")
        if began:
            raise OutputError(
                f"output.uri: {store.uri} holds an unfinished commit of a job with other "
                f"settings ({key}); run that job again to finish it, or pass --overwrite "
                f"to replace it")
        raise _committed(plan, store, record, key, settings_known, positions_known)


def _committed(plan: ExportPlan, store: Store, record: dict, key: str, settings_known: bool,
               positions_known: bool) -> OutputError | AlreadyDone:
    """What stops a run on an output that holds a dataset: whose it is, and what can be
    done (trial J: --overwrite was suggested for a dataset zarr-python wrote, which it then
    refused, and this same job's finished dataset read as anyone's); AlreadyDone for
    this job's own (`settings_known`: `plan` is what the run exports). Without either, a
    registration or a field estimation is to run first."""
    if not record:
        return _foreign_dataset(store.uri, key)
    if record.get("status") == "committed":
        if settings_known and record.get("fingerprint") == fingerprint(plan):
            return AlreadyDone(
                f"{store.uri} already holds this job's committed dataset ({key}); tile-verify "
                f"checks it, --overwrite exports it again")
        changed = changed_parts(record, plan)
        if not settings_known and not positions_known and changed is not None \
                and "tile_files" not in changed \
                and record.get("output_settings") == output_settings(plan):
            # before a registration, flatfield estimation or intensity matching that is
            # not reused, which decides the rest (trial L)
            return made_anew_refusal(store.uri, key, "of these tile files and output settings ")
    if record.get("status") == "committed" and earlier_version(record):
        return _earlier_dataset(store.uri, key, record, plan.output)
    # how it differs, where the plan is what the run exports or at its positions (trial X:
    # a touched tile file was refused without saying that was the difference)
    how = f" {_how_it_differs(record, plan)}" if settings_known or positions_known else ""
    return OutputError(f"output.uri: {store.uri} already holds a committed dataset ({key}){how}; "
                       f"choose another output.uri, or pass --overwrite to replace it")


def _earlier_dataset(uri: str, key: str, record: dict, output: OutputSpec) -> OutputError:
    """The refusal of a committed dataset of an earlier version (`records.earlier_version`),
    which the run and the dry run both give."""
    found = record.get("format")
    if found and found != output.format:   # trial AK: this job cannot have made it
        why = (" (an output named .zarr was N5 before 2026-12-06)"
               if found == "n5" and output.uri.rstrip("/").endswith(".zarr") else "")
        return OutputError(
            f"output.uri: {uri} already holds a committed {found} dataset of an earlier "
            f"version of this tool ({key}), where this job writes {output.format}{why}: pass "
            f"--overwrite to export it again, or choose another output.uri")
    # trial T: a scheduler's resubmission after an upgrade was told only to choose; not
    # "nothing to do if it is": its voxels may differ from this version's (review)
    return OutputError(
        f"output.uri: {uri} already holds a committed dataset of an earlier version of this "
        f"tool ({key}), whose voxels this version may compute otherwise: tile-verify checks "
        f"it as it is; pass --overwrite to export it again, or choose another output.uri")


def made_anew_refusal(uri: str, key: str, which: str = "") -> OutputError:
    """The refusal of a committed output (`key` its metadata) before work that decides
    whether it is this job's: a registration, flatfield estimation or intensity matching
    that is not reused; `which` says what is known to be the same."""
    return OutputError(
        f"output.uri: {uri} already holds a committed dataset {which}({key}); this run would "
        f"register the tiles, estimate their fields or match their intensities anew first, "
        f"so whether it is this job's cannot be told before that work: nothing to do if "
        f"they are as they were (tile-verify checks the dataset); pass --overwrite to make "
        f"them and export again")


def _metadata_keys(output: OutputSpec) -> list[str]:
    """The metadata documents whose presence means the output holds a dataset: the first
    array's of this format, and any metadata document at the root, whatever wrote it
    (`ownership.METADATA_NAMES`)."""
    spec = output.array(0, 0, 0)
    keys = [key for key, _ in format_module(output.format).array_documents(spec)]
    return keys + list(METADATA_NAMES)


def _foreign_dataset(uri: str, key: str) -> OutputError:
    # not "did not write": ours whose record was lost looks the same (trial S)
    return OutputError(f"output.uri: {uri} already holds a dataset that no job record of this "
                       f"pipeline vouches for ({key}; no {Sidecars.of(uri).job_record} beside "
                       f"it): choose another output.uri, or move it away")


def _foreign_files(uri: str, leftover: str) -> OutputError:
    return OutputError(f"output.uri: {uri} is not empty: it holds files that are not from this "
                       f"job (e.g. {leftover}); remove them or choose another output.uri")


def look_at_output(uri: str, s3: S3Options | None, output: OutputSpec, overwrite: bool = False,
                   anew: bool = False) -> tuple[str, str]:
    """The dry run's look at the output, read only: what it holds, as a line for the
    plan, and the refusal the real run (with `overwrite` or not) would stop with there
    whatever the tiles ('' for none: whether a dataset is this job's takes the tile
    files, which the dry run does not open); `anew`: the run registers, estimates fields
    or matches intensities anew first, so it refuses any committed dataset (trial X);
    `output`: the output planned, whose metadata a refusal names as the run's does. An
    S3 endpoint is given a few seconds: a plan made away from the cluster says it could
    not look instead of waiting out the job's bound."""
    if s3 is not None:
        s3 = replace(s3, max_attempts=2, request_timeout=min(s3.request_timeout, 5.0))
    try:
        store, beside = open_store(uri, s3), beside_store(uri, s3)
        # an answer that refuses (no such bucket, denied credentials) is the run's refusal
        # too (trial AA: "not looked at" and exit 0 where the run stops with exit 2), and so
        # is what the run refuses before it looks at the dataset (trial AM: "output:
        # empty", exit 0, for a local output that is a file, a folder it may not write in,
        # a user's files under the names kept beside it)
        store.check_may_write("output.uri")
        check_sidecars(uri, output.layout, store, beside)
        check_not_anothers(uri, beside, s3)
        record = read_json(beside, Sidecars.of(uri).job_record)
        holder = live_holder(beside, uri)
        leftover = next(iter(store.list()), None)
        metadata = next((key for key in _metadata_keys(output) if store.exists(key)), None)
        # what --overwrite deletes must all be ours (trial AF: "replaces it", exit 0), and
        # an unfinished run is neither continued nor discarded with a user's file in it
        # (trial AM); not listed where a live holder refuses first, nor for a committed
        # dataset without --overwrite (review: millions of objects on S3)
        listed = record and not holder and (overwrite or record.get("status") != "committed")
        foreign = foreign_count(store) if listed else (0, None)
    except NoAnswer as e:   # not asked from here (no answer, no credentials): the run looks itself
        return f"output:   not looked at ({e})", ""
    except OutputError as e:   # a damaged job record or lock: the run stops on it too
        return "", str(e)
    except Exception as e:   # not reachable from here: the run looks for itself
        return f"output:   not looked at ({cause(e)})", ""
    if holder:
        return "", str(held_error(uri, holder, beside))
    if not record:
        if leftover is None:
            return "output:   empty", ""
        if overwrite:
            return "", str(_not_ours_to_replace(uri, store, leftover))
        return "", str(_foreign_dataset(uri, metadata) if metadata else _foreign_files(uri, leftover))
    if foreign[1] is not None and overwrite:
        return "", str(foreign_files(store, foreign[0], foreign[1], "--overwrite"))
    if foreign[1] is not None:   # whether the run would continue it or discard it
        return "", (f"output.uri: {store.uri} holds {foreign[0]} file(s) this pipeline did not "
                    f"write (e.g. {foreign[1]}) beside an unfinished run, which the run neither "
                    f"continues nor discards while they are there: move them out first")
    earlier = earlier_version(record)   # not this job's, whatever its settings (trial AK)
    if record.get("status") == "committed" and earlier and not overwrite:   # as the run refuses it
        return "", str(_earlier_dataset(uri, metadata or "its metadata", record, output))
    if record.get("status") == "committed" and anew and not overwrite:
        return "", str(made_anew_refusal(uri, metadata or "its metadata"))
    if record.get("status") == "committed":
        return ("output:   holds a committed dataset of " +
                ("an earlier version of this tool: " if earlier else "this tool: ") +
                ("--overwrite replaces it" if overwrite else
                 "the run says nothing to do if it is this job's, and refuses it otherwise "
                 "(--overwrite replaces it)")), ""
    # a commit cut short, as the run tells it (`_refuse_committed`): metadata recorded and
    # written (trial AD: "discards it otherwise" where the run of another job refuses)
    if commit_began(record) and metadata and earlier:
        return ("output:   holds an unfinished commit of an earlier version of this tool: " +
                ("--overwrite replaces it" if overwrite else "the run refuses it (finish it "
                 "with that version; --overwrite replaces it)")), ""
    if commit_began(record) and metadata:
        return ("output:   holds an unfinished commit of this tool: " +
                ("--overwrite replaces it" if overwrite else "the run finishes it if it is this "
                 "job's, and refuses it otherwise (--overwrite replaces it)")), ""
    if earlier:
        return ("output:   holds an unfinished run of an earlier version of this tool: the run "
                "discards it (finish it with that version to keep its blocks)"), ""
    return ("output:   holds an unfinished run of this tool: the run continues it if it is this "
            "job's, and discards it otherwise"), ""


def _not_ours_to_replace(uri: str, store: Store, leftover: str) -> OutputError:
    """The refusal of --overwrite for an output holding files without our job record."""
    return OutputError(f"--overwrite replaces only a dataset this pipeline wrote: {store.uri} "
                       f"has no job record ({Sidecars.of(uri).job_record}) and "
                       f"holds e.g. {leftover}; nothing was deleted")


def remove_dataset(plan: ExportPlan, store: Store, beside: Store) -> int:
    """--overwrite: delete the previous dataset and its records beside it (job record,
    ledger), so the new run starts from an empty output; only what its job record and
    ledgers prove ours (`ownership.remove_owned`). Returns the objects removed."""
    names = Sidecars.of(plan.output.uri)
    leftover = next(iter(store.list()), None)
    if leftover is not None and not read_json(beside, names.job_record):
        raise _not_ours_to_replace(plan.output.uri, store, leftover)
    removed = remove_owned(store, "--overwrite")
    for key in list(beside.list(names.ledger_root)):
        beside.delete(key)
        # its folders, once empty, with it (trial Y: an empty ledger folder was left)
        beside.remove_empty_folders(key, names.ledger_root)
    # the record last: it is what tells the rest ours, to a rerun after a kill in between
    beside.delete(names.job_record)
    return removed
