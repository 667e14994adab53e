"""What a finished job prints: a few lines a user reads, with where to look next."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pipelines.config.values import size_text
from pipelines.formats import TENSORSTORE_DRIVERS
from pipelines.report.progress import rate_text
from pipelines.storage import uri as uris

if TYPE_CHECKING:
    from pipelines.driver import ExportResult
    from pipelines.registering import StitchResult


def _independent_loops(doc: dict) -> int | None:
    """How many independent loops the kept pairs make over the linked tiles (kept pairs
    minus a spanning forest's), None when the report does not say (an older one). With
    none, every residual is 0 whatever the pairs measured (trial X: 5 pairs over 6 tiles,
    residuals 0.0, tiles 27 voxels off with the default search)."""
    solve, tiles = doc.get("solve", {}), doc.get("tiles")
    if tiles is None or "groups" not in solve:
        return None
    linked = tiles - len(solve.get("unlinked_tiles", ()))
    return doc["pairs"]["kept"] - (linked - solve["groups"])


def stitch_summary(result: StitchResult) -> str:
    """Lines for the console: pairs, what was dropped, accuracy, where the files are."""
    doc = result.outcome.report
    if result.outcome.applied:
        more = f" and {len(result.outcome.applied) - 1} more" if len(result.outcome.applied) > 1 else ""
        return (f"stitching: placed {result.outcome.applied[0]}{more} at the positions registered "
                f"in {result.outcome.report_path}, no pair measured again (the registered tiles "
                f"and [stitching] settings are unchanged; --set stitching.force=true registers again)")
    if result.outcome.reused:
        return (f"stitching: reused {result.outcome.tile_jsons[0][0]} (stage positions, tiles "
                f"and [stitching] settings unchanged since {result.outcome.report_path}; "
                f"--set stitching.force=true registers again)")
    pairs, solve_info = doc["pairs"], doc["solve"]
    # every pair tried is one task, measured or without a match; the time per pair is theirs
    tried, resumed = pairs['measured'] + pairs['unmatched'], pairs.get("resumed", 0)
    # a resumed registration's time is of the pairs this run tried (trial L)
    per_pair = (f"{doc['seconds']['per_pair']:.2f} s per pair" if not resumed else
                f"{doc['seconds']['per_pair']:.2f} s per pair of the {tried - resumed} tried now, "
                f"{resumed} by an interrupted run")
    lines = [
        f"stitching: {tried} pair{'' if tried == 1 else 's'} tried in "
        f"{doc['seconds']['pairs']:.1f} s ({per_pair}): "
        f"{pairs['measured']} measured, {pairs['kept']} kept, "
        f"{pairs.get('below_min_score', 0)} below min_score, {pairs['dropped']} dropped as "
        f"inconsistent, {pairs['unmatched']} without a match",
        f"           residual median {_voxels(doc['residual_voxels']['median'])} / max "
        f"{_voxels(doc['residual_voxels']['max'])} voxels; corrections median "
        f"{_voxels(doc['correction_voxels']['median'])} / max "
        f"{_voxels(doc['correction_voxels']['max'])} voxels",
    ]
    loops = _independent_loops(doc)
    if loops == 0 and pairs["kept"]:
        lines.append(f"           no loop among the {pairs['kept']} kept pairs: each tile is "
                     f"placed by one chain of pairs, so the residuals (0 by construction) "
                     f"cannot show a false match; check the picture, or narrow "
                     f"stitching.search to about twice the stage's error")
    if pairs.get("skipped_linear_parts_differ"):   # a project's views of several angles
        lines.append(f"           {pairs['skipped_linear_parts_differ']} pairs of views with "
                     f"different linear parts (angles) not tried: each linear part is "
                     f"registered separately ({solve_info['groups']} linked groups, each "
                     f"with its own common shift)")
    views = {r["index"]: r["view"] for r in doc.get("tile_results", ()) if "view" in r}

    def named(tiles) -> str:
        return ", ".join(f"{i} ({views[i]})" if i in views else str(i) for i in tiles)
    if solve_info["unlinked_tiles"]:
        lines.append(f"           tiles without a trustworthy link (stage position kept): "
                     f"[{named(solve_info['unlinked_tiles'])}]")
    if solve_info.get("contradicted_tiles"):   # trial AC: placed 23-30 voxels off, unwarned
        lines.append(f"warning: tiles held by one pair that another of their pairs, scoring "
                     f"as high, contradicts (one of the two is a wrong match, and the positions "
                     f"cannot tell which: such a tile may be off by up to stitching.search, or "
                     f"right; look at it in the picture, raise stitching.min_score or narrow "
                     f"stitching.search): [{named(solve_info['contradicted_tiles'])}]")
    if solve_info.get("groups", 1) > 1 and not pairs.get("skipped_linear_parts_differ"):
        lines.append(f"           {solve_info['groups']} groups of tiles linked among themselves: "
                     f"the groups are placed relative to each other by the stage positions "
                     f"alone (no kept pair joins them)")
    refined = [path for channels in result.outcome.tile_jsons for path in channels]
    lines.append(f"           refined tiles: {refined[0]}")
    lines += [f"                          {path}" for path in refined[1:]]   # other channels, timepoints
    lines.append(f"           report: {result.outcome.report_path}")
    lines.append(f"           picture: {result.outcome.picture_path}")
    return "\n".join(lines)


def _voxels(value: float | None) -> str:
    """A figure of the stitching report; none when no pair was kept (JSON null)."""
    return "n/a" if value is None else f"{value}"


def stitch_report(result: StitchResult) -> str:
    """What `tile-stitch` prints at the end."""
    return (f"{stitch_summary(result)}\ntime:      {result.run_seconds:.1f} s "
            f"(+ {result.startup_seconds:.1f} s start-up)")


def kvstore_spec(result: ExportResult, array: str) -> dict[str, Any]:
    """tensorstore's kvstore for one array of the output: a folder, or an S3 prefix."""
    location = uris.parse(result.summary.uri)
    if location.scheme != "s3":
        return {"driver": "file", "path": f"{location.path}/{array}"}
    prefix = location.path.strip("/")
    spec = {"driver": "s3", "bucket": location.authority,
            "path": f"{prefix}/{array}/".lstrip("/")}
    s3 = result.plan.s3
    if s3 and s3.endpoint_url:
        spec["endpoint"] = without_userinfo(s3.endpoint_url)
    if s3 and s3.region:
        spec["aws_region"] = s3.region
    return spec


def without_userinfo(uri: str) -> str:
    """`uri` without a `user:secret@` before its host: what is printed must never carry a
    credential (validation refuses them; this holds whatever reaches the console)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# tensorstore's own AWS chain reads credentials from the environment's variables but not
# a profile of a credentials file (AWS_SHARED_CREDENTIALS_FILE with AWS_PROFILE, as
# docs/clusters.md advises: 403 for the printed command, trial Q). The command first finds
# them as the job did, through boto3's chain with the job's s3.profile (which, named,
# wins over variables, as in `storage.s3`), and hands them over in its own environment.
_CREDENTIALS_HANDED_OVER = (
    "import os, boto3; c = boto3.Session(profile_name={profile}).get_credentials(); "
    "f = c.get_frozen_credentials() if c else None; "
    "os.environ.update({{'AWS_ACCESS_KEY_ID': f.access_key, 'AWS_SECRET_ACCESS_KEY': "
    "f.secret_key, **({{'AWS_SESSION_TOKEN': f.token}} if f.token else {{}})}} if f else {{}}); ")


def open_command(result: ExportResult) -> str:
    """A shell command that opens level 0 with tensorstore, as pasted: the Python the job
    ran with (a bare `python` may lack tensorstore), the S3 endpoint and region in the
    spec; credentials come from where the job found them (its s3.profile, variables, a
    credentials file's profile), and are never printed."""
    s = result.summary
    kvstore = kvstore_spec(result, s.arrays[0])
    spec = {"driver": TENSORSTORE_DRIVERS[s.format], "kvstore": kvstore}
    code = f"import tensorstore as ts; print(ts.open({json.dumps(spec)}).result())"
    s3 = result.plan.s3
    if kvstore["driver"] == "s3":
        profile = json.dumps(s3.profile) if s3 and s3.profile else "None"   # "…": no shell escapes
        code = _CREDENTIALS_HANDED_OVER.format(profile=profile) + code
    return " ".join([shlex.quote(sys.executable), "-c", shlex.quote(code)])


def _what_ran(result: ExportResult) -> str:
    """The tasks of a whole run, or, resuming, the blocks this run computed of all."""
    s = result.summary
    if not result.resumed:
        return f"{s.tasks} block task{'' if s.tasks == 1 else 's'}"
    return (f"the {s.blocks - result.resumed} of {s.blocks} blocks left "
            f"({result.resumed} recorded by an earlier run)")


def _by_whom(result: ExportResult) -> str:
    """Resuming, the objects counted are the dataset's, not this run's alone (trial X)."""
    return " (by this run and the earlier one it resumed)" if result.resumed else ""


def _corrections_part(seconds: dict[str, float]) -> str:
    """The time line's notes of the corrections' executor work before the export."""
    names = {"flatfield_seconds": "flatfield estimation", "intensity_seconds": "intensity matching"}
    return "".join(f" (+ {seconds[key]:.1f} s {name})" for key, name in names.items() if key in seconds)


def _stitching_part(stitched: StitchResult | None, seconds: float) -> str:
    """The time line's note of the registration before the export: its seconds, or that an
    earlier run's results were reused (checking the fingerprint is no registration)."""
    if stitched is None:
        return ""
    if stitched.outcome.reused:
        return " (stitching reused)"
    return f" (+ {seconds:.1f} s stitching)"


def export_report(result: ExportResult) -> str:
    """What `tile-export` prints at the end: the dataset, objects, time, how to open it."""
    s, plan = result.summary, result.plan
    # rates and ratios of what the blocks computed: the arrays' span counts voxels no tile
    # reaches, which nothing computes or stores (tiles far apart gave "75 595 214 : 1")
    computed = result.computed_bytes
    mb = computed / 2**20
    stitching = result.stitching.run_seconds if result.stitching else 0.0
    # trial J: flatfield estimation and intensity matching counted as block tasks' time
    export_seconds = result.run_seconds - stitching - sum(result.corrections.values())
    rate = mb / export_seconds if export_seconds > 0 else 0.0
    ratio = computed / s.bytes_written if s.bytes_written else float("inf")
    precision = 0 if mb >= 10 else 2   # a small export is not "0 MiB" (trial X)
    empty = (f"; the arrays span {size_text(result.volume_bytes)}, the rest left empty as "
             f"no tile reaches it" if computed < 0.99 * result.volume_bytes else "")
    lines = [
        f"dataset:  {s.uri}  (format {s.format}, layout {s.layout}, {s.levels} level"
        f"{'s' if s.levels > 1 else ''}, level 0 at {s.arrays[0]}: x,y,z = {list(s.shape)}, "
        f"{plan.array.dtype})",
        f"objects:  {s.objects_written} written{_by_whom(result)}, {s.objects_skipped} empty "
        f"and skipped, {s.bytes_written / 2**20:.1f} MiB stored (compression ratio {ratio:.2f})",
        f"time:     {export_seconds:.1f} s for {_what_ran(result)}"
        f"{_stitching_part(result.stitching, stitching)}{_corrections_part(result.corrections)} "
        f"(+ {result.startup_seconds:.1f} s Spark start-up); " + (
            f"{rate_text(rate)} of {mb:.{precision}f} MiB uncompressed output{empty}"
            if not result.resumed else
            f"{mb:.{precision}f} MiB uncompressed output (no MiB/s: an earlier run computed "
            f"part of it)"
            f"{empty}"),
        f"spark:    master {result.master}" if result.master else
        "spark:    not started: an earlier run had computed every block",
        f"open it:  {open_command(result)}",
    ]
    lines += [f"also:     {name} (next to the container)" for name in s.extra_files]
    if result.report:
        lines.append(f"report:   {result.report.folder}/ ({', '.join(result.report.files)})")
    return "\n".join(lines)
