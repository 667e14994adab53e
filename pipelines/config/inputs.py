"""The [input] table: tile JSONs as timepoints × channels, or one BigStitcher project
and the views it selects, and the channels' names."""

from __future__ import annotations

import difflib
import posixpath
from typing import Any

from pipelines.config.values import no_userinfo
from pipelines.errors import ConfigError


def parse_inputs(table: dict, where: str) -> tuple[tuple[str, ...], ...]:
    """Tile JSONs as timepoints × channels, from `tiles` (one timepoint) or `timepoints`."""
    tiles, timepoints = table["tiles"], table["timepoints"]
    if bool(tiles) == bool(timepoints):
        found = "both are set" if tiles else "neither is set"
        raise ConfigError(f"{where}input: give exactly one of input.tiles (one timepoint) and "
                          f"input.timepoints (a list of tile JSON lists); {found}")
    rows = [tiles] if tiles else timepoints
    for path in _flat_paths(rows):
        no_userinfo(path, "input.tiles" if tiles else "input.timepoints", where)
    projects = [p for p in _flat_paths(rows) if p.lower().endswith(".xml")]
    if projects and not (isinstance(tiles, str) and tiles == projects[0]):
        raise ConfigError(f"{where}input: a BigStitcher project ({projects[0]}) holds all its "
                          f"timepoints and channels: give it alone as input.tiles, and select "
                          f"views with input.views")
    if not projects and table["views"]:
        raise ConfigError(f"{where}input.views: selects views of a BigStitcher project (an .xml "
                          f"input.tiles); tile JSONs have none")
    if not isinstance(rows, list):
        raise ConfigError(f"{where}input.timepoints: expected a list of lists of tile JSONs, found {rows!r}")
    parsed = []
    for row in rows:
        row = [row] if isinstance(row, str) else row
        if not isinstance(row, list) or not row or not all(isinstance(p, str) and p for p in row):
            key = "input.tiles" if tiles else "input.timepoints"
            raise ConfigError(f"{where}{key}: expected a tile JSON path or a non-empty list of "
                              f"them (one per channel), found {row!r}")
        parsed.append(tuple(row))
    if len({len(row) for row in parsed}) != 1:
        raise ConfigError(f"{where}input.timepoints: every timepoint needs the same number of "
                          f"channels, found {[len(r) for r in parsed]}")
    _listed_once(parsed, "input.tiles" if tiles else "input.timepoints", where)
    _same_channel_order(parsed, where)
    return tuple(parsed)


def _listed_once(rows: list[tuple[str, ...]], key: str, where: str) -> None:
    """Refuse a tile JSON listed twice (two channels, or two timepoints, of the same
    tiles): a slip of a long list that would export the same pixels twice without a
    word (trial V)."""
    def at(t: int, c: int) -> str:
        return f"channel {c}" if len(rows) == 1 else f"timepoint {t}, channel {c}"

    seen: dict[str, str] = {}
    for t, row in enumerate(rows):
        for c, path in enumerate(row):
            if path in seen:
                raise ConfigError(f"{where}{key}: {path} is listed twice ({seen[path]} and "
                                  f"{at(t, c)}); each channel of each timepoint is a tile "
                                  f"JSON of its own")
            seen[path] = at(t, c)


def default_channel_names(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The channel names a timepoint's tile JSONs give when input.channel_names does not:
    their file names without extension (`ch0`, `ch1`); when those repeat (`c0/tiles.json`,
    `c1/tiles.json`), their folders' names, when those do not; else `channel N`."""
    for names in ([posixpath.splitext(posixpath.basename(p.rstrip("/")))[0] for p in paths],
                  [posixpath.basename(posixpath.dirname(p.rstrip("/"))) for p in paths]):
        if all(names) and len(set(names)) == len(names):
            return tuple(names)
    return tuple(f"channel {c}" for c in range(len(paths)))


def _same_channel_order(rows: list[tuple[str, ...]], where: str) -> None:
    """Refuse a timepoint that lists the same channel files (by name) as timepoint 0 in
    another order: its channels would be fused into the others' arrays and corrected with
    the others' fields, without a word."""
    first = default_channel_names(rows[0])
    for t, row in enumerate(rows[1:], start=1):
        names = default_channel_names(row)
        if names != first and sorted(names) == sorted(first):
            raise ConfigError(f"{where}input.timepoints: timepoint {t} lists its channels in "
                              f"another order than timepoint 0 (by file name: "
                              f"{', '.join(names)} against {', '.join(first)}); list them in "
                              f"one order at every timepoint")


def _flat_paths(rows: Any) -> list[str]:
    if isinstance(rows, str):
        return [rows]
    if isinstance(rows, list):
        return [p for r in rows for p in _flat_paths(r)]
    return []


VIEW_KEYS = ("setup", "timepoint", "channel", "tile", "angle", "illumination")


def parse_views(value: Any, where: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """input.views: {attribute = [ids]} with attributes of VIEW_KEYS."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}input.views: expected a table such as {{angle = [0]}}, found {value!r}")
    out = []
    for key, ids in value.items():
        if key not in VIEW_KEYS:
            hint = difflib.get_close_matches(key, VIEW_KEYS, n=1)
            raise ConfigError(f"{where}input.views.{key}: unknown attribute"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; expected one of {', '.join(VIEW_KEYS)}")
        ids = [ids] if isinstance(ids, int) and not isinstance(ids, bool) else ids
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**31 for i in ids):
            raise ConfigError(f"{where}input.views.{key}: expected a list of ids (whole numbers "
                              f"≥ 0), found {ids!r}")
        out.append((key, tuple(sorted(set(ids)))))
    return tuple(sorted(out))


def parse_channel_names(value: Any, channels: int | None, where: str) -> tuple[str, ...]:
    """Names as given; `channels` None: counted later (a BigStitcher project's channels)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}input.channel_names: expected a list of names, found {value!r}")
    if channels is not None:
        check_channel_names(tuple(value), channels, where)
    return tuple(value)


def check_channel_names(names: tuple[str, ...], channels: int, where: str = "") -> None:
    """input.channel_names, when given, names every channel, each once: checked when the
    job is read, or once a BigStitcher project's channels are counted."""
    if names and len(names) != channels:
        raise ConfigError(f"{where}input.channel_names: {len(names)} name"
                          f"{'' if len(names) == 1 else 's'} for {channels} channels")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:   # trial V: stitching.channel = "RFP" then meant the first of two
        raise ConfigError(f"{where}input.channel_names: {twice!r} names two channels; a "
                          f"channel's name is how stitching.channel and viewers tell it apart")
