"""fusion.flatfield and fusion.intensity checked (see pipelines.illumination)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.config.values import resolve_paths_in
from pipelines.errors import ConfigError

INTENSITIES = ("none", "match")
AUTO = "auto"


def flatfield_setting(value: Any, channels: int | None, source: str, where: str) -> tuple[str, ...]:
    """fusion.flatfield: "" (none), "auto", a folder (one channel) or one folder per
    channel, each a path or an s3:// URI. Relative folders are resolved against the job
    file's folder."""
    key = f"{where}fusion.flatfield"
    folders = [value] if isinstance(value, str) else value
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ConfigError(f"{key}: expected \"auto\", a folder or a list of folders (one per "
                          f"channel), found {value!r}")
    if folders in ([""], []):
        return ()
    if folders == [AUTO]:
        return (AUTO,)
    if channels is not None and len(folders) != channels:
        raise ConfigError(f"{key}: {len(folders)} folder{'' if len(folders) == 1 else 's'} for "
                          f"{channels} channel{'' if channels == 1 else 's'} (give one "
                          f"per channel, or \"auto\")")
    base = Path(source).resolve().parent if source else Path.cwd()
    return tuple(_folder_from(f, base) for f in folders)


def flatfield_folders_from(value: Any, base: Path) -> Any:
    """fusion.flatfield as given with --set: its folders resolved against `base` (the
    current folder, as every path given with --set; the job file's folder is for paths in
    the file), "" and "auto" as they are; anything else is left to `flatfield_setting`."""
    if isinstance(value, str):
        return value if value in ("", AUTO) else _folder_from(value, base)
    if isinstance(value, list) and all(isinstance(f, str) for f in value) \
            and value not in ([""], [AUTO]):   # as flatfield_setting reads those (review J)
        return [_folder_from(f, base) for f in value]
    return value


def _folder_from(folder: str, base: Path) -> str:
    """A fields folder as every path of a job is read (`values.resolve_paths_in`: s3:// as
    it is, file:// as its path, anything else relative to `base`)."""
    try:
        return resolve_paths_in(folder, base)
    except ConfigError as e:
        raise ConfigError(f"fusion.flatfield: {e}") from None


def enabled_setting(value: Any, where: str, key: str) -> bool:
    """A yes/no key of [flatfield]: `enabled` (estimate the fields before fusing, and
    apply them) or `per_slice` (estimate fields that change with depth)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}flatfield.{key}: expected true or false, found {value!r}")
    return value


def intensity_setting(value: Any, where: str) -> str:
    """fusion.intensity: "none", or "match" (per-tile gain and offset from the overlaps)."""
    if value not in INTENSITIES:
        raise ConfigError(f"{where}fusion.intensity: expected one of {', '.join(INTENSITIES)}, "
                          f"found {value!r}")
    return str(value)
