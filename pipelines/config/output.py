"""The [output] table: where the dataset goes, its format, layout, chunks, shards, blocks,
codec, type and pyramid."""

from __future__ import annotations

import math
from typing import Any

from pipelines.config.codecs import codec_options
from pipelines.config.model import (
    DEFAULT_BLOCK,
    DOWNSAMPLING,
    DTYPES,
    FORMATS,
    LAYOUTS,
    TIME_UNITS,
    CodecConfig,
    OutputConfig,
)
from pipelines.config.values import parse_choice, positive_triple
from pipelines.errors import ConfigError, OutputError
from pipelines.storage import uri as uris


def _string(table: dict, section: str, key: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{section}.{key}: expected a non-empty string, found {value!r}")
    return value


def _codec(value: Any, fmt: str, where: str) -> CodecConfig:
    """output.codec as a name or a table, checked against what `fmt` takes."""
    if isinstance(value, str):
        codec = CodecConfig(value)
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        codec = CodecConfig(value["name"], tuple(sorted((k, v) for k, v in value.items() if k != "name")))
    else:
        raise ConfigError(
            f"{where}output.codec: expected a name such as \"zstd\" or a table such as "
            f"{{ name = \"blosc\", cname = \"zstd\", clevel = 5 }}, found {value!r}")
    try:
        codec_options(codec, fmt)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None
    return codec


def check_layout_timepoints(layout: str, timepoints: int, where: str = "") -> None:
    """The n5-viewer layout has no timepoint axis: checked when the job is read, or once a
    BigStitcher project's timepoints are counted."""
    if layout == "n5-viewer" and timepoints > 1:
        raise ConfigError(f"{where}output.layout: the n5-viewer layout holds one timepoint; "
                          f"use layout = \"bdv\" for {timepoints} timepoints")


def _default_format(out: dict) -> str:
    """The format the other output keys imply, so one key switches the output kind:
    `shard` or `layout = "ome"` (zarr3), else the output's name (`….zarr`: zarr3, `….n5`:
    n5; what viewers go by), else n5."""
    if out["shard"] != [] or out["layout"] == "ome":
        return "zarr3"
    return "zarr3" if _named_format(out["uri"]) == "zarr" else "n5"


def _named_format(uri: Any) -> str:
    """"zarr" or "n5" when the output's name ends so, else ''."""
    name = str(uri).rstrip("/").lower() if isinstance(uri, str) else ""
    return next((kind for kind in ("zarr", "n5") if name.endswith(f".{kind}")), "")


def _format_reason(out: dict) -> str:
    """Why the output has the format it has, for messages: the key the user set, or what
    `_default_format` took it from (trial AF: a format the user never set was blamed)."""
    if out["format"]:
        return f"output.format is {out['format']!r}"
    fmt = _default_format(out)
    why = ("output.shard is set" if out["shard"] != [] else "output.layout is \"ome\""
           if out["layout"] == "ome" else f"the output is named .{_named_format(out['uri'])}"
           if _named_format(out["uri"]) else "no output.format is set")
    return f"the format is {fmt!r} ({why})"


def _check_named_format(out: dict, given: dict, where: str) -> None:
    """A name that says one format over a dataset of another is a mistake readers repeat:
    a `.zarr` folder of N5 is opened as Zarr and found empty. `given`: the [output] table
    as the job file has it (the format not yet filled in)."""
    named, fmt = _named_format(out["uri"]), out["format"]
    if named and not fmt.startswith(named):
        # the other way out is to undo what made the format (review: "set output.format
        # to n5" where the shard had made it zarr3 led to "sharding needs zarr3")
        other = ("leave output.shard out (sharding is Zarr v3's)" if not given["format"] and
                 given["shard"] != [] else "choose an N5 layout (n5-viewer, bdv)" if not
                 given["format"] else f"set output.format to "
                 f"{'n5' if named == 'n5' else 'zarr2 or zarr3'}")
        raise ConfigError(f"{where}output.uri {out['uri']!r} is named .{named} but "
                          f"{_format_reason(given)}; name it .{'n5' if fmt == 'n5' else 'zarr'}, "
                          f"or {other}")


def _check_layout(out: dict, given: dict, fmt: str, where: str) -> None:
    """A layout of another format: say which format has it, and why the output has this one."""
    layout = out["layout"]
    if layout in LAYOUTS[fmt] or not isinstance(layout, str):
        return
    owners = [f for f, layouts in LAYOUTS.items() if layout in layouts]
    if owners:
        raise ConfigError(f"{where}output.layout {layout!r} is a layout of "
                          f"{' and '.join(owners)}, but {_format_reason(given)}; its layouts: "
                          f"{', '.join(LAYOUTS[fmt])}")


def parse_output(out: dict, timepoints: int, where: str, uri_required: bool = True) -> OutputConfig:
    """The [output] table checked; output.uri may be "" (left out) when not `uri_required`."""
    given, out = out, {**out, "format": out["format"] or _default_format(out)}
    fmt = parse_choice(out, "output", "format", FORMATS, where)
    _check_named_format(out, given, where)
    out = {**out, "layout": out["layout"] or LAYOUTS[fmt][0]}
    _check_layout(out, given, fmt, where)
    layout = parse_choice(out, "output", "layout", LAYOUTS[fmt], where)
    if uri_required:   # tile-stitch and tile-flatfield write no output (trial I)
        check_layout_timepoints(layout, timepoints, where)
    chunks = positive_triple(out, "output", "chunks", where)
    shard = positive_triple(out, "output", "shard", where) if out["shard"] != [] else None
    if shard and fmt != "zarr3":
        raise ConfigError(f"{where}output.shard: sharding needs format = \"zarr3\", found {fmt!r}")
    block = positive_triple(out, "output", "block", where) if out["block"] != [] else (
        shard or DEFAULT_BLOCK)
    if shard and any(b % s for b, s in zip(block, shard)):
        raise ConfigError(f"{where}output.block: {list(block)} must be a whole number of shards "
                          f"{list(shard)} per axis, so that each task owns whole shards")
    if out["dtype"] and out["dtype"] not in DTYPES:
        if _numpy_type(out["dtype"]):   # a real type not offered: a hint by spelling named
            # one of another range (trial AI: uint64 -> 'uint16', float16 -> 'float64')
            raise ConfigError(f"{where}output.dtype: {out['dtype']!r} is not offered; expected "
                              f"one of {', '.join(DTYPES)}")
        parse_choice(out, "output", "dtype", DTYPES, where)
    levels = out["levels"]
    if levels != "auto" and (not isinstance(levels, int) or isinstance(levels, bool) or levels < 1):
        raise ConfigError(f"{where}output.levels: expected an integer ≥ 1 or \"auto\", found {levels!r}")
    interval, unit = _time_axis(out, layout, where)
    return OutputConfig(
        uri=_output_uri(_string(out, "output", "uri", where), where) if out["uri"] or uri_required else "",
        format=fmt, layout=layout, chunks=chunks,
        block=block, shard=shard, codec=_codec(out["codec"], fmt, where), dtype=out["dtype"],
        levels=levels, downsample=parse_choice(out, "output", "downsample", DOWNSAMPLING, where),
        time_interval=interval, time_unit=unit)


def _time_axis(out: dict, layout: str, where: str) -> tuple[float, str]:
    """output.time_interval and output.time_unit: the time between timepoints, which only
    OME-Zarr's `t` axis records (trial V: its scale was always 1, without a unit)."""
    interval = out["time_interval"]
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not math.isfinite(interval) or not 0 < interval <= 1e12:
        raise ConfigError(f"{where}output.time_interval: expected a number above 0 (time_unit "
                          f"per timepoint), found {interval!r}")
    unit = parse_choice(out, "output", "time_unit", TIME_UNITS, where)
    if layout != "ome" and (interval != 1.0 or unit):
        named = ", ".join(key for key, set_ in (("output.time_interval", interval != 1.0),
                                                ("output.time_unit", bool(unit))) if set_)
        raise ConfigError(f"{where}{named}: only the ome layout records the time between "
                          f"timepoints (its t axis), not {layout!r}")
    return float(interval), unit


def _output_uri(uri: str, where: str) -> str:
    """A path, file:// or s3:// URI; anything else (memory:// is a test fixture, never a
    user's output) is refused before anything runs."""
    try:
        location = uris.parse(uri)
    except OutputError as e:
        raise ConfigError(f"{where}output.uri: {e}") from None
    if location.remote and not location.authority:
        raise ConfigError(f"{where}output.uri: {uri!r} names no bucket; expected "
                          f"s3://bucket/folder/volume")
    if not uris.name(uri) or (location.remote and not location.path):   # records go beside it
        raise ConfigError(f"{where}output.uri: {uri!r} is a root folder or a bucket; name the "
                          f"container inside it, e.g. {uri.rstrip('/')}/volume")
    return uri


def _numpy_type(name: Any) -> bool:
    """Whether `name` is a numpy type's name (uint64, float16, complex64, bool)."""
    import numpy as np
    try:
        return isinstance(name, str) and np.dtype(name).name == name
    except TypeError:
        return False
