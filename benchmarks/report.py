"""Markdown tables of the throughput benchmark, from the run records in its JSON."""

from __future__ import annotations

import statistics

MiB = 2**20
TOOLS = {  # key: row label
    "limit": "limit: {n} processes encode + write only (best of 1 or 2 threads each)",
    "ours-placement": "this project, placement (no overlap), local[{n}]",
    "ours-overlap": "this project, 10 % overlap, linear blending, local[{n}]",
    "limit-overlap": "limit, writing the overlap volume (as above)",
    "tensorstore-overlap": "tensorstore, writing the overlap volume",
    "tensorstore": "tensorstore (default concurrency)",
    "dask": "dask + zarr-python 3",
}
RATIOS = [  # (numerator, denominator, label, goal)
    ("ours-placement", "limit", "ours (placement) / limit", 0.85),
    ("ours-placement", "tensorstore", "ours (placement) / tensorstore", 1.0),
    ("ours-placement", "dask", "ours (placement) / dask", 1.0),
    # the goals hold for the overlapping acquisition too (fusion included), against
    # the limit and tensorstore writing that acquisition's own (blended, smaller) volume
    ("ours-overlap", "limit-overlap", "ours (overlap) / limit (overlap volume)", 0.85),
    ("ours-overlap", "tensorstore-overlap", "ours (overlap) / tensorstore (overlap volume)", 1.0),
    # a limit some tool beats is not a limit (PROFILE.md, "The limit")
    ("limit", "tensorstore", "limit / tensorstore (below 1: tensorstore beats the limit)", 1.0),
    ("limit-overlap", "tensorstore-overlap", "limit / tensorstore, overlap volume", 1.0),
]


def mib_s(run: dict | None) -> float | None:
    if not run or not run.get("seconds"):
        return None
    return run["volume_bytes"] / MiB / run["seconds"]


def _find(runs: list[dict], tool: str, case: str) -> dict | None:
    return next((r for r in runs if r["tool"] == tool and r["case"] == case), None)


def _cell(value: float | None, digits: int = 1, na: str = "n/a") -> str:
    return na if value is None else f"{value:.{digits}f}"


def throughput(runs: list[dict], cases: list[str], cores: int) -> str:
    """MiB/s of uncompressed output per tool and case."""
    lines = ["| MiB/s (2^20 bytes/s) of uncompressed output | " + " | ".join(cases) + " |",
             "| --- |" + " --- |" * len(cases)]
    for tool, label in TOOLS.items():
        if not any(r["tool"] == tool for r in runs) and tool != "dask":
            continue
        cells = []
        for case in cases:
            run = _find(runs, tool, case)
            na = "n/a (1)" if tool == "dask" and case.startswith("n5") else "—"
            cells.append(_cell(mib_s(run), na=na))
        lines.append(f"| {label.format(n=cores)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compression(runs: list[dict], cases: list[str]) -> str:
    """Stored bytes per tool: the same codec settings must give about the same size."""
    lines = ["| compression ratio (uncompressed / stored) | " + " | ".join(cases) + " |",
             "| --- |" + " --- |" * len(cases)]
    for tool in TOOLS:
        cells = []
        for case in cases:
            run = _find(runs, tool, case)
            ok = run and run.get("stored_bytes")
            cells.append(f"{run['volume_bytes'] / run['stored_bytes']:.3f}" if ok else "—")
        if any(c != "—" for c in cells):
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(runs: list[dict], cases: list[str]) -> tuple[str, dict]:
    """The goal ratios per case, and {label: {case: ratio}} for the JSON."""
    def fastest(a: dict | None, b: dict | None) -> float | None:
        top, bottom = mib_s(a), mib_s(b)
        return top / bottom if top and bottom else None
    return _ratio_table("ratio (goal)", runs, cases, fastest)


def _ratio_table(heading: str, runs: list[dict], cases: list[str], ratio) -> tuple[str, dict]:
    """The table of `RATIOS` per case, each `ratio(top run, bottom run)` (None: n/a), and
    {label: {case: ratio}} for the JSON."""
    lines = [f"| {heading} | " + " | ".join(cases) + " |", "| --- |" + " --- |" * len(cases)]
    found: dict = {}
    for top, bottom, label, goal in RATIOS:
        cells = []
        for case in cases:
            value = ratio(_find(runs, top, case), _find(runs, bottom, case))
            found.setdefault(label, {})[case] = None if value is None else round(value, 3)
            mark = "" if value is None or goal is None else (" ✓" if value >= goal else " ✗")
            cells.append(_cell(value, 2, "n/a") + mark)
        title = f"{label} (≥ {goal})" if goal else label
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines), found


def _round_seconds(run: dict | None) -> list[float]:
    """A record's time in each round (`--repeat` > 1: the tools take turns, a round is one
    turn of every tool); for the limit, its faster setting in that round."""
    if not run:
        return []
    if run.get("settings"):
        counts = {len(s["samples"]) for s in run["settings"]}
        if len(counts) != 1:
            return []
        return [min(s["samples"][i] for s in run["settings"]) for i in range(counts.pop())]
    return list(run.get("samples") or [])


def paired_ratios(runs: list[dict], cases: list[str]) -> tuple[str, dict]:
    """The goal ratios taken round by round, then their median: each ratio compares two
    runs made minutes apart instead of each tool's fastest run of the whole benchmark, so
    a change of the shared machine's speed between rounds (BENCHMARKS.md: ± 30 %) weighs
    less. Empty when the runs were not repeated."""
    def by_rounds(a: dict | None, b: dict | None) -> float | None:
        ta, tb = _round_seconds(a), _round_seconds(b)
        if not (a and b and len(ta) == len(tb) > 1):
            return None
        return statistics.median((a["volume_bytes"] / x) / (b["volume_bytes"] / y)
                                 for x, y in zip(ta, tb))
    table, found = _ratio_table("ratio, median over rounds of each round's ratio (goal)",
                                runs, cases, by_rounds)
    if not any(v is not None for row in found.values() for v in row.values()):
        return "", {}
    return table, found


def memory(runs: list[dict]) -> str:
    """Peak memory per Python worker during our exports, against the plan."""
    lines = ["| our export | workers | peak VmHWM | peak RssAnon | plan task_memory | "
             "3 × (block bytes + tile cache) | RssAnon within 3 × budget |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        m = r.get("memory")
        if not m or not r["tool"].startswith("ours"):
            continue
        ok = "yes" if m["rss_anon_peak"] <= m["budget_3x"] else "NO"
        lines.append(f"| {r['tool']} {r['case']} | {m['workers']} | {m['vm_hwm'] / MiB:.0f} MiB | "
                     f"{m['rss_anon_peak'] / MiB:.0f} MiB | {m['task_memory'] / MiB:.0f} MiB | "
                     f"{m['budget_3x'] / MiB:.0f} MiB | {ok} |")
    return "\n".join(lines)


def s3(runs: list[dict]) -> str:
    lines = ["| S3 (moto server on loopback, NOT a real S3) | output | objects | objects/s | MiB/s |",
             "| --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['case']} | {r['volume_bytes'] / MiB:.0f} MiB | {r['objects']} | "
                     f"{r['objects'] / r['seconds']:.1f} | {mib_s(r):.1f} |")
    return "\n".join(lines)


def scaling(s: dict) -> str:
    """1 → N cores: our export, and the limit for what the machine itself allows, measured
    taking turns (`throughput.scaling`). Issue 13's goal: our ratio ≥ 0.95 × the limit's."""
    def line(name: str, one: dict, many: dict, ratio: float) -> str:
        return f"  {name}: {mib_s(one):.1f} → {mib_s(many):.1f} MiB/s, {ratio:.2f} ×"

    def mark(value: float) -> str:
        return " ✓" if value >= 0.95 else " ✗"
    return "\n".join([
        f"1 → {s['cores']} cores, placement {s['case']} (fastest of {len(s['rounds'])} rounds "
        "of the four runs taking turns):",
        line("ours", s["one_core"], s["many_cores"], s["ratio"]),
        line(f"the limit, 1 → {s['cores']} processes", s["limit_one_process"],
             s["limit_many_processes"], s["limit_ratio"]),
        f"  ours reaches {s['relative']:.2f} of the limit's scaling{mark(s['relative'])}; the "
        f"median over rounds of each round's share: {s['paired_relative']:.2f}"
        f"{mark(s['paired_relative'])} (rounds {', '.join(f'{v:.2f}' for v in s['rounds'])}; "
        "goal ≥ 0.95)"])
