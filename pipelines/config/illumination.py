"""fusion.flatfield and fusion.intensity checked (see pipelines.illumination)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.storage.uri import is_remote

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
        raise ConfigError(f"{key}: {len(folders)} folders for {channels} channels (give one "
                          f"per channel, or \"auto\")")
    base = Path(source).resolve().parent if source else Path.cwd()
    return tuple(f if is_remote(f) else str((base / Path(f).expanduser()).resolve()) for f in folders)


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
