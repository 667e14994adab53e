"""Checks of single job-file values: each turns one raw value into a typed one, or raises
a ConfigError naming the key and saying what was expected and what was found. The
[input] and [output] tables' own checks are in `inputs.py` and `output.py`."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

from pipelines.config.master import MasterFormError, parse_master
from pipelines.config.model import (
    BLENDINGS,
    MIXING_BLENDINGS,
    S3_MIN_PART,
    StitchingConfig,
)
from pipelines.errors import ConfigError, OutputError
from pipelines.storage import uri as uris

_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
MAX_SIZE = 2**50   # 1 PiB: beyond any memory, cache or S3 part a job can mean
# The largest chunk, block or shard extent per axis: N5 stores a block's size as a 32-bit
# integer, and larger ones overflow the plan's int64 voxel counts (2^31 cubed is 2^93).
MAX_EXTENT = 2**31 - 1
MAX_SECONDS = 1e6   # ~11.6 days; time.sleep overflows near 1e10 s
S3_MAX_PUT = 5 * 2**30   # S3 refuses a single PUT, or a multipart part, above 5 GiB


def resolve_paths_in(value: Any, base: Path) -> Any:
    """Resolve a path, or every path in a (nested) list, against `base`; `~` is the home
    folder and file:// URIs become plain paths."""
    if isinstance(value, list):
        return [resolve_paths_in(v, base) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if value.startswith("file:"):
        try:
            return uris.local_path(value)
        except OutputError as e:
            raise ConfigError(str(e)) from None
    if "://" in value:
        return value
    return str((base / Path(value).expanduser()).resolve())


def parse_size(value: Any, what: str) -> int:
    """Bytes from an int or a string such as "4GiB", "512m", "2g": from 1 byte to 1 PiB."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        size = value
    else:
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", str(value).lower())
        if not m:
            raise ConfigError(f"{what}: expected a size such as \"4GiB\" or \"512m\", found {value!r}")
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])   # 0 and below: refused next
    if not 1 <= size <= MAX_SIZE:   # "0.1" is 0 bytes; 2^60 no machine has
        raise ConfigError(f"{what}: expected a size from 1 byte to 1PiB, found {value!r}")
    return size


def size_text(n: int) -> str:
    """Bytes as people read them: "3.20 GiB", "512263136.87 PiB", "0.5 KiB"."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def parse_choice(table: dict, section: str, key: str, options: tuple, where: str) -> str:
    value = table[key]
    if value not in options:
        hint = difflib.get_close_matches(str(value), options, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            # "" (none) shown quoted, not as an empty item (trial X: "one of , attosecond")
            f"{where}{section}.{key}: expected one of "
            f"{', '.join(repr(o) if o == '' else str(o) for o in options)}, found {value!r}{extra}"
        )
    return value


def positive_triple(table: dict, section: str, key: str, where: str) -> tuple[int, int, int]:
    value = table[key]
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_EXTENT
                for v in value)
    )
    if not ok:
        raise ConfigError(
            f"{where}{section}.{key}: expected three positive integers [x, y, z] up to "
            f"{MAX_EXTENT}, found {value!r}"
        )
    return tuple(value)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Spark properties with a single name after "spark." (all others have a dotted name, such
# as executor.memory), so that a typo like `mastr` is caught instead of silently ignored.
SPARK_SINGLE_NAMES = ("master", "jars", "files", "archives", "speculation", "logConf")


# The names Spark itself redacts as secrets (its spark.redaction.regex), `_` spellings too:
# AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, fs.s3a.secret.key, spark.authenticate.secret.
SECRET_NAME = re.compile(r"(?i)secret|password|token|access[._]?key")


def is_secret_property(name: str) -> bool:
    """Whether Spark property `name` holds a secret (`SECRET_NAME`): not a path to a file
    holding one (`spark.authenticate.secret.file`, `…AWS_WEB_IDENTITY_TOKEN_FILE`: the safe
    way) nor a switch (`spark.yarn.security.tokens.hbase.enabled`; review of stop 48)."""
    last = name.rsplit(".", 1)[-1]
    return bool(SECRET_NAME.search(name)) and not (last.lower().endswith("file") or last == "enabled")


def secret_property(named: str) -> ConfigError:
    """The refusal of a Spark property whose name is a secret's (`SECRET_NAME`), `named`
    as the user gave it (never its value)."""
    return ConfigError(f"{named}: secrets are refused as Spark properties (they reach process "
                       f"command lines, the Spark UI and event logs); give S3 credentials "
                       f"through the environment of the launching process, a credentials file "
                       f"on every node (AWS_SHARED_CREDENTIALS_FILE with AWS_PROFILE or "
                       f"s3.profile), or an instance role")


def parse_spark_conf(table: dict, where: str) -> tuple[tuple[str, str], ...]:
    """[spark] keys as Spark properties: `master` and `executor.memory` or `"spark.x.y"`."""
    conf = {}
    for key, value in _flatten(table).items():
        name = key if key.startswith("spark.") else f"spark.{key}"
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}spark.{key}: expected a plain value, found {value!r}")
        short = name.removeprefix("spark.")
        if "." not in short and short not in SPARK_SINGLE_NAMES:
            hint = difflib.get_close_matches(short, SPARK_SINGLE_NAMES, n=1)
            raise ConfigError(f"{where}{name}: unknown Spark property"
                              + (f"; did you mean 'spark.{hint[0]}'?" if hint else ""))
        if is_secret_property(name):
            raise secret_property(f"{where}{name}")
        if short == "master" and not isinstance(value, str):
            raise ConfigError(f"{where}spark.master: expected a string such as \"local[*]\", found {value!r}")
        if short == "master":   # checked here, so that the dry run refuses it too
            try:
                parse_master(value)
            except MasterFormError as e:
                raise ConfigError(f"{where}spark.master = {value!r}: {e}") from None
        conf[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return tuple(sorted(conf.items()))


def parse_stitching(table: dict, names: Any, default_names: tuple[str, ...] | None,
                    where: str) -> StitchingConfig:
    """[stitching] checked; `channel` may be an index or a channel name: one of
    input.channel_names, else of `default_names` (the tile JSONs' file names). For a
    BigStitcher project (`default_names` None) the channels are counted and named only once
    it is read: a name not in input.channel_names is kept, and resolved then
    (`registration.results.registration_target`)."""
    enabled, force = table["enabled"], table["force"]
    for key, flag in (("enabled", enabled), ("force", force)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{where}stitching.{key}: expected true or false, found {flag!r}")
    channel = table["channel"]
    known = tuple(names) if isinstance(names, list) and names else default_names
    if isinstance(channel, str) and known is not None and channel in known:
        channel = known.index(channel)
    index = isinstance(channel, int) and not isinstance(channel, bool) and channel >= 0
    if default_names is None:   # a project: a name is resolved once it is read
        if not (index and channel < 2**31 or isinstance(channel, str) and channel):
            raise ConfigError(f"{where}stitching.channel: expected a channel index or one of "
                              f"the project's channel names, found {channel!r}")
    elif not (index and channel < len(default_names)):
        raise ConfigError(f"{where}stitching.channel: expected a channel index below "
                          f"{len(default_names)} or one of the channel names "
                          f"({', '.join(known or ())}), found {channel!r}")
    search = _triple_or_one(table, "search", where, minimum=0)
    downsample = _triple_or_one(table, "downsample", where, minimum=1)
    min_overlap = _triple_or_one(table, "min_overlap", where, minimum=1)
    numbers = {}
    for key, low, high in (("min_score", -1.0, 1.0), ("max_residual", 0.0, 2.0**40)):
        value = table[key]   # nan fails every comparison; inf is beyond any voxel distance
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and low <= value <= high and (key != "max_residual" or value > 0)):
            raise ConfigError(f"{where}stitching.{key}: expected a number in "
                              f"{'[-1, 1]' if key == 'min_score' else '(0, 2^40] voxels'}, "
                              f"found {value!r}")
        numbers[key] = float(value)
    return StitchingConfig(enabled, channel, search, downsample, min_overlap, **numbers,
                           force=force)


def _triple_or_one(table: dict, key: str, where: str, minimum: int) -> tuple[int, int, int]:
    """An integer per axis [x, y, z], or one integer for all three, each in
    [`minimum`, MAX_EXTENT] (voxels of a tile, which no tile exceeds)."""
    value = table[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * 3
    if not (isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_EXTENT
            for v in value)):
        raise ConfigError(f"{where}stitching.{key}: expected an integer from {minimum} to "
                          f"{MAX_EXTENT} or three of them [x, y, z], found {table[key]!r}")
    return tuple(value)


def parse_fail_blocks(value: Any, where: str) -> tuple[tuple[int, int, int], ...]:
    """Block indices that the test hook makes fail (see README, "debug")."""
    def is_index(b: Any) -> bool:
        return isinstance(b, list) and len(b) == 3 and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**31 for i in b)

    if not isinstance(value, list) or not all(is_index(b) for b in value):
        raise ConfigError(
            f"{where}debug.fail_blocks: expected a list of block indices [x, y, z], found {value!r}"
        )
    return tuple(tuple(b) for b in value)


def no_userinfo(value: str, key: str, where: str) -> None:
    """Refuse a URI with credentials in it (scheme://user:secret@host/…), naming the key
    and the host but never the userinfo."""
    from urllib.parse import urlparse
    if "://" in value and "@" in urlparse(value).netloc:
        host = urlparse(value).netloc.rpartition("@")[2]
        raise ConfigError(f"{where}{key}: credentials in a URI (…@{host}) are refused and never "
                          f"printed; give them through the environment (AWS_ACCESS_KEY_ID, "
                          f"AWS_SECRET_ACCESS_KEY), a profile (s3.profile) or an instance role")


def parse_voxel_size(value: Any, where: str) -> tuple[float, float, float]:
    """fusion.voxel_size: world units per output voxel, one number or [x, y, z]."""
    values = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = isinstance(values, list) and len(values) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 1e-6 <= v <= 1e6
        for v in values)
    if not ok:
        raise ConfigError(f"{where}fusion.voxel_size: expected a number or [x, y, z] of numbers "
                          f"from 1e-6 to 1e6 (world units per output voxel), found {value!r}")
    return float(values[0]), float(values[1]), float(values[2])


def parse_bounding_box(value: Any, where: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """fusion.bounding_box: {min = [x, y, z], max = [x, y, z]} in world units, or {}."""
    if value == {}:
        return None
    key = f"{where}fusion.bounding_box"
    if not isinstance(value, dict) or set(value) != {"min", "max"}:
        raise ConfigError(f"{key}: expected {{min = [x, y, z], max = [x, y, z]}} (world units), "
                          f"found {value!r}")
    corners = []
    for name in ("min", "max"):
        v = value[name]
        if not (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                and abs(x) < 2**40 for x in v)):
            raise ConfigError(f"{key}.{name}: expected three finite numbers [x, y, z], found {v!r}")
        corners.append(tuple(float(x) for x in v))
    if any(b < a for a, b in zip(*corners)):
        raise ConfigError(f"{key}: max {list(corners[1])} is below min {list(corners[0])} on some axis")
    return corners[0], corners[1]


def parse_s3(table: dict, where: str) -> tuple[tuple[str, Any], ...]:
    """The [s3] table with sizes in bytes. Credentials never appear here: they come from
    the standard AWS chain (environment, shared profile, instance role)."""
    for key in ("endpoint_url", "region", "profile"):
        if not isinstance(table[key], str):
            raise ConfigError(f"{where}s3.{key}: expected a string, found {table[key]!r}")
    no_userinfo(table["endpoint_url"], "s3.endpoint_url", where)
    endpoint = table["endpoint_url"]
    if endpoint and not endpoint.lower().startswith(("http://", "https://")):
        # botocore refuses it later as a ValueError about the output's URI
        raise ConfigError(f"{where}s3.endpoint_url: expected http://host:port or https://…, "
                          f"found {endpoint!r}")
    attempts = table["max_attempts"]
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        raise ConfigError(f"{where}s3.max_attempts: expected a whole number from 1 to 100, "
                          f"found {attempts!r}")
    timeout = table["request_timeout"]
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 0 < timeout <= 3600):   # nan fails too: a stall must end
        raise ConfigError(f"{where}s3.request_timeout: expected seconds in (0, 3600], "
                          f"found {timeout!r}")
    sizes = {k: parse_size(table[k], f"{where}s3.{k}") for k in ("multipart_threshold", "part_size")}
    if sizes["part_size"] < S3_MIN_PART:
        raise ConfigError(f"{where}s3.part_size: S3 needs parts of at least 5MiB, found {table['part_size']!r}")
    for key, size in sizes.items():   # S3 refuses a PUT or a part above 5 GiB
        if size > S3_MAX_PUT:
            raise ConfigError(f"{where}s3.{key}: S3 takes at most 5GiB in one PUT or part, "
                              f"found {table[key]!r}")
    return tuple(sorted({**table, **sizes, "request_timeout": float(timeout)}.items()))


def check_label_settings(downsample: str, blending: str, blending_given: bool, interpolation: str,
                         intensity: str, flatfield: tuple[str, ...], estimate_flatfield: bool,
                         where: str) -> None:
    """With output.downsample = "mode" (labels), refuse what computes values between or
    other than the tiles': a blending that averages (`blending_given`: whether the job
    named it, or it is the default: trial S), linear interpolation (trial AR: at a
    sub-voxel position or through an affine it put 13 361 voxels of 201 ids no tile has
    into the output, exit 0), a gain or a flatfield (they would renumber ids)."""
    if downsample != "mode":
        return
    mode = 'with output.downsample = "mode"'
    if blending in MIXING_BLENDINGS:
        *others, last = (f'"{b}"' for b in BLENDINGS if b not in MIXING_BLENDINGS)
        named = f"{blending!r}" + ("" if blending_given else " (the default)")
        raise ConfigError(f"{where}fusion.blending: {named} averages overlapping tiles, which "
                          f"invents values between labels; {mode} set "
                          f"fusion.blending = {', '.join(others)} or {last}")
    if interpolation == "linear":
        raise ConfigError(f"{where}fusion.interpolation: 'linear' resamples tiles between their "
                          f"pixels, which invents values between labels; {mode} set "
                          f"fusion.interpolation = \"nearest\"")
    if intensity != "none":
        raise ConfigError(f"{where}fusion.intensity: {intensity!r} scales each tile's values, which "
                          f"renumbers labels; {mode} leave it \"none\"")
    if flatfield or estimate_flatfield:   # the key set, which the line's source names
        key = "fusion.flatfield" if flatfield else "flatfield.enabled"
        raise ConfigError(f"{where}{key}: a flatfield correction changes each pixel's value, "
                          f"which renumbers labels; {mode} leave fusion.flatfield and "
                          f"[flatfield] enabled unset")


def parse_delay(value: Any, where: str) -> float:
    return parse_seconds({"task_delay": value}, "debug", "task_delay", where)


def parse_seconds(table: dict, section: str, key: str, where: str) -> float:
    """Seconds from 0 to MAX_SECONDS (nan and inf are refused: they would stall every task,
    and time.sleep overflows on a finite 1e300)."""
    value = table[key]
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 <= value <= MAX_SECONDS):
        raise ConfigError(f"{where}{section}.{key}: expected seconds from 0 to {MAX_SECONDS:g}, "
                          f"found {value!r}")
    return float(value)


def parse_count(table: dict, section: str, key: str, where: str, most: int = MAX_EXTENT) -> int:
    """A whole number in [0, most]: by default below 2^31, as every other count and extent."""
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ConfigError(f"{where}{section}.{key}: expected a whole number from 0 to {most}, "
                          f"found {value!r}")
    return value


def parse_size_or_zero(value: Any, what: str) -> int:
    """`parse_size`, or 0 (turned off: 0, "0" as `--set key=0` gives it, "0MiB")."""
    if re.fullmatch(r"\s*0+(?:\.0*)?\s*([kmgtp]?)(?:i?b)?\s*", str(value).lower()):
        return 0
    try:
        return parse_size(value, what)
    except ConfigError:
        raise ConfigError(f"{what}: expected 0 (off) or a size from 1 byte to 1PiB, such as "
                          f"\"256MiB\", found {value!r}") from None
