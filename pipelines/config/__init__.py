"""Job file schema, defaults, `--set` overrides and clear errors.

A job file is TOML. `load_job` reads it, applies `--set key=value` overrides, checks
every key and value, and returns a frozen `JobConfig`. All config errors are raised
here, before anything is opened or written, as `ConfigError` naming the key.

Relative paths in the job file are resolved against the job file's folder (so a job
file and its data can move together); relative paths given with `--set` are resolved
against the current directory, as a user typing them expects.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config.illumination import (
    enabled_setting,
    flatfield_folders_from,
    flatfield_setting,
    intensity_setting,
)
from pipelines.config.inputs import (
    default_channel_names,
    parse_channel_names,
    parse_inputs,
    parse_views,
)
from pipelines.config.model import (
    BLENDINGS,
    DEFAULT_BLOCK,
    DOWNSAMPLING,
    DTYPES,
    FORMATS,
    INTERPOLATIONS,
    LAYOUTS,
    MIXING_BLENDINGS,
    PATH_KEYS,
    REQUIRED,
    RESUME_VERIFY,
    SCHEMA,
    SPARK_OWN_KEYS,
    CodecConfig,
    JobConfig,
    OutputConfig,
    StitchingConfig,
)
from pipelines.config.output import parse_output
from pipelines.config.values import (
    check_label_settings,
    parse_bounding_box,
    parse_choice,
    parse_count,
    parse_delay,
    parse_fail_blocks,
    parse_s3,
    parse_seconds,
    parse_size,
    parse_size_or_zero,
    parse_spark_conf,
    parse_stitching,
    parse_voxel_size,
    resolve_paths_in,
)
from pipelines.errors import ConfigError

__all__ = ["BLENDINGS", "DEFAULT_BLOCK", "DOWNSAMPLING", "DTYPES", "FORMATS", "INTERPOLATIONS",
           "LAYOUTS", "MIXING_BLENDINGS", "CodecConfig", "JobConfig", "OutputConfig", "StitchingConfig",
           "apply_override", "build_config", "keys_named", "load_job", "parse_size"]


def load_job(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
             writes_output: bool = True) -> JobConfig:
    """Read a TOML job file, apply `key=value` overrides and return a validated JobConfig.
    `writes_output=False` (tile-stitch, tile-flatfield): output.uri may be left out."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: job file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read job file: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    _resolve_paths(raw, path.resolve().parent, f"{path}: ")
    for item in overrides:
        apply_override(raw, item)
    try:
        return build_config(raw, source=str(path), writes_output=writes_output)
    except ConfigError as error:
        raise ConfigError(blame_override(str(error), f"{path}: ", overrides)) from None


@contextmanager
def keys_named(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Iterator[None]:
    """Around the work after `load_job`: a ConfigError about a job key found only then
    (`output.levels: … too many` while planning) names where the key was set, the
    job file or `--set`, as the errors `load_job` finds do."""
    try:
        yield
    except ConfigError as error:
        message = str(error)
        if not _ABOUT_A_KEY.match(message):
            raise
        raise ConfigError(blame_override(f"{path}: {message}", f"{path}: ", overrides)) from None


# a message that begins with a job key: `section.key:` or `section.key = value:`
_ABOUT_A_KEY = re.compile(rf"(?:{'|'.join(map(re.escape, SCHEMA))})\.[\w.]+(?::| =)")


def blame_override(message: str, prefix: str, overrides: list[str] | tuple[str, ...]) -> str:
    """A message about a key the command line set names `--set`, not the job file, whose
    value was replaced (e.g. `--set stitching.search=-1`)."""
    rest = message.removeprefix(prefix)
    # a message about two keys together names both first: "output.time_interval,
    # output.time_unit: …" (trial X: blamed on the job file when --set gave the second)
    named = [k.strip() for k in rest.partition(":")[0].split(",")] if ", " in rest.partition(":")[0] else [rest]
    for item in overrides:
        key = item.partition("=")[0].strip()
        # the key, or one of its sub-keys (`output.codec.level` of `--set output.codec=…`)
        if message.startswith(prefix) and any(
                text.startswith(key) and text[len(key):][:1] in ("", ":", " ", "[", ".") for text in named):
            return f"--set {rest}"
    return message


def apply_override(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override; the value is read as TOML, else as a string."""
    key, sep, text = item.partition("=")
    text = text.strip()
    parts = key.strip().split(".", 1)
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. output.format=zarr3")
    section, name = parts
    if section not in SCHEMA:   # named as typed: the job file may be fine
        raise ConfigError(f"--set {key.strip()}: unknown section [{section}]{_closest_section(section)}")
    if section != "spark" and name not in SCHEMA[section]:
        raise ConfigError(f"--set {key.strip()}: unknown key {section}.{name}"
                          f"{_closest(f'{section}.{name}')}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}=…: arrays or tables nested too deeply") from None
    default = SCHEMA.get(section, {}).get(name)
    is_text = isinstance(default, str) or (section, name) in PATH_KEYS
    if is_text and not isinstance(value, (str, list, dict)):
        value = text  # a string key: "2024-05-01" or "1" is meant as text, not a date or number
    if (section, name) in PATH_KEYS:
        try:
            value = resolve_paths_in(value, Path.cwd())
        except ConfigError as e:
            raise ConfigError(f"--set {key.strip()}: {e}") from None
    if (section, name) == ("fusion", "flatfield"):   # its folders, not "auto" (trial S)
        value = flatfield_folders_from(value, Path.cwd())
    raw.setdefault(section, {})
    if not isinstance(raw[section], dict):
        raise ConfigError(f"--set {item!r}: [{section}] is not a table in the job file")
    raw[section][name] = value


def build_config(raw: dict, source: str = "", writes_output: bool = True) -> JobConfig:
    """Check a parsed job document against SCHEMA and turn it into a JobConfig (for a
    command that writes no output, `writes_output=False`, output.uri may be left out:
    it is "" then)."""
    where = f"{source}: " if source else ""
    merged = _merge_defaults(raw, where, () if writes_output else (("output", "uri"),))
    found = raw.get("input")
    given: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in ("tiles", "timepoints"):   # given empty reads as left out once merged
        if key in given and given[key] in ([], ""):
            raise ConfigError(f"{where}input.{key} is empty: give "
                              + ("a tile JSON, a list of them (one per channel) or a "
                                 "BigStitcher XML" if key == "tiles" else
                                 "a list of timepoints, each a list of tile JSONs"))
    inputs = parse_inputs(merged["input"], where)
    project = inputs[0][0].lower().endswith(".xml")
    config = JobConfig(
        inputs=inputs,
        channel_names=parse_channel_names(merged["input"]["channel_names"],
                                          None if project else len(inputs[0]), where),
        views=parse_views(merged["input"]["views"], where),
        resume_verify=parse_choice(merged["resume"], "resume", "verify", RESUME_VERIFY, where),
        voxel_size=parse_voxel_size(merged["fusion"]["voxel_size"], where),
        bounding_box=parse_bounding_box(merged["fusion"]["bounding_box"], where),
        flatfield=flatfield_setting(merged["fusion"]["flatfield"],
                                    None if project else len(inputs[0]), source, where),
        intensity=intensity_setting(merged["fusion"]["intensity"], where),
        estimate_flatfield=enabled_setting(merged["flatfield"]["enabled"], where, "enabled"),
        flatfield_per_slice=enabled_setting(merged["flatfield"]["per_slice"], where, "per_slice"),
        output=parse_output(merged["output"], len(inputs), where, uri_required=writes_output),
        blending=parse_choice(merged["fusion"], "fusion", "blending", BLENDINGS, where),
        interpolation=parse_choice(merged["fusion"], "fusion", "interpolation", INTERPOLATIONS, where),
        stitching=parse_stitching(merged["stitching"], merged["input"]["channel_names"],
                                  None if project else default_channel_names(inputs[0]), where),
        task_memory=parse_size(merged["limits"]["task_memory"], f"{where}limits.task_memory"),
        spark_conf=parse_spark_conf({k: v for k, v in merged["spark"].items()
                                     if k not in SPARK_OWN_KEYS}, where),
        blocks_per_task=parse_count(merged["spark"], "spark", "blocks_per_task", where),
        tile_cache=parse_size_or_zero(merged["limits"]["tile_cache"], f"{where}limits.tile_cache"),
        checkpoint_seconds=parse_seconds(merged["limits"], "limits", "checkpoint_seconds", where),
        fail_blocks=parse_fail_blocks(merged["debug"]["fail_blocks"], where),
        s3=parse_s3(merged["s3"], where),
        task_delay=parse_delay(merged["debug"]["task_delay"], where),
        source=source,
    )
    check_label_settings(config.output.downsample, config.blending,
                         "blending" in (raw.get("fusion") or {}), config.interpolation,
                         config.intensity, config.flatfield, config.estimate_flatfield, where)
    return config


def all_keys() -> list[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def _closest(name: str) -> str:
    match = difflib.get_close_matches(name, all_keys(), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(all_keys())}"


def _closest_section(name: str) -> str:
    match = difflib.get_close_matches(name, list(SCHEMA), n=1, cutoff=0.5)
    return (f"; did you mean [{match[0]}]?" if match
            else f"; sections: {', '.join(f'[{s}]' for s in SCHEMA)}")


def _merge_defaults(raw: dict, where: str, optional: tuple[tuple[str, str], ...] = ()) -> dict:
    """SCHEMA's defaults under the job's own keys; a REQUIRED key missing is an error
    unless it is `optional` (then "")."""
    merged: dict[str, dict] = {}
    for section, value in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}unknown section [{section}]{_closest_section(section)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}{section} must be a table [{section}], found {value!r}")
    for section, keys in SCHEMA.items():
        given = dict(raw.get(section, {}))
        if section != "spark":
            for key in given:
                if key not in keys:
                    raise ConfigError(f"{where}unknown key {section}.{key}{_closest(f'{section}.{key}')}")
        for key, default in keys.items():
            if key not in given:
                if default is REQUIRED and (section, key) not in optional:
                    raise ConfigError(f"{where}missing required key {section}.{key}")
                given[key] = "" if default is REQUIRED else default
        merged[section] = given
    return merged


def _resolve_paths(raw: dict, base: Path, where: str) -> None:
    for section, key in PATH_KEYS:
        table = raw.get(section)
        if isinstance(table, dict) and key in table:
            try:
                table[key] = resolve_paths_in(table[key], base)
            except ConfigError as e:
                raise ConfigError(f"{where}{section}.{key}: {e}") from None
