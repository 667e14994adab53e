"""Whether intensity coefficients on disk can be reused: what decides a channel's
coefficients, digested, against the digest their file keeps (`corrections.match_intensities`
measures only the channels whose digests differ; the checks before an export's work ask
the same question without measuring)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines import __version__
from pipelines.config import JobConfig
from pipelines.illumination.correct import Correction
from pipelines.illumination.fields import fields_digest
from pipelines.illumination.intensity import METHOD
from pipelines.illumination.plan import flatfield_folders, intensity_paths
from pipelines.storage.documents import json_if_readable, read_bytes
from pipelines.tiles import TileSet
from pipelines.tiles.identity import file_identities


@dataclass(frozen=True)
class Matching:
    """What decides the coefficients of `config`'s channels (`channels`), taken once: the
    checks before an export's work take it, and `match_intensities` measures with it when
    it is handed the same config (its fingerprints read every tile file's identity: a
    HEAD each on S3, and each channel's fields)."""

    config: JobConfig
    channels: tuple[tuple[int, TileSet, str, str], ...]

    def reused(self) -> bool:
        """Whether every channel's coefficients on disk were matched from what decides them
        now (their files read)."""
        s3 = self.config.s3_options()
        return all(matched_already(path, fingerprint, s3) for _, _, path, fingerprint in self.channels)


def matching(config: JobConfig, tiles: tuple[TileSet, ...],
             identities: Mapping[str, Any] | None = None) -> Matching:
    """`Matching` of `config` whose first timepoint's tile sets are `tiles`; `identities`:
    the tile files' identities this run took already, by path."""
    return Matching(config, tuple(channels(config, tiles, Correction(flatfield_folders(config)),
                                           identities)))


def made_anew(config: JobConfig, registers: bool, tiles: tuple[TileSet, ...],
              identities: Mapping[str, Any] | None = None) -> tuple[bool, Matching | None]:
    """Whether an export makes anew, before its own work, what decides its bytes: fields
    estimated by [flatfield] enabled, a registration not reused (`registers`), or
    coefficients `match_intensities` would measure again (of `tiles`, the first
    timepoint's tile sets at the positions fused). Before such work the run cannot tell a
    committed output is this job's, so it refuses one, and the dry run says so (trial X:
    they were measured and their file rewritten, then the committed output refused). Also
    the `Matching` taken to tell (None when not asked), which the export measures with.
    The run and the dry run decide with this."""
    if config.estimate_flatfield or registers:
        return True, None
    if config.intensity != "match":
        return False, None
    found = matching(config, tiles, identities)
    return not found.reused(), found


def channels(config: JobConfig, tiles: tuple[TileSet, ...], correction: Correction,
             identities: Mapping[str, Any] | None = None) -> list[tuple[int, TileSet, str, str]]:
    """Per channel of the first timepoint (`tiles`): its number, tiles, coefficients' path
    and the fingerprint of what decides them (`matching_fingerprint`)."""
    s3 = config.s3_options()
    return [(c, tileset, path, matching_fingerprint(
                config.inputs[0][0 if config.is_project else c], tileset, correction.folder(c), s3,
                identities))
            for c, (tileset, path) in enumerate(zip(tiles, intensity_paths(config, tiles)))]


def matching_fingerprint(tile_json: str, tiles: TileSet, fields: str | None, s3,
                         identities: Mapping[str, Any] | None = None) -> str:
    """A digest of what decides one channel's coefficients: its tile JSON's (or project's)
    text, which tiles it holds (a project's views: which container and array each tile
    number reads, as `input.views` selects them: trial K reused one selection's
    coefficients for another), its tile files' identities (`tiles.identity`), the fields
    it is measured through, the package version and the solve's method (`intensity.METHOD`:
    the version alone had kept coefficients of an earlier solve). The same digest: the
    same coefficients."""
    essentials = {"version": __version__, "method": METHOD,
                  "json": hashlib.sha256(read_bytes(tile_json, s3)).hexdigest(),
                  "views": [(t.index, t.path, t.dataset) for t in tiles],
                  "tiles": file_identities(sorted({t.path for t in tiles}), s3, identities),
                  "fields": fields_digest(fields, s3) if fields else ""}
    return hashlib.sha256(json.dumps(essentials, sort_keys=True, default=str).encode()).hexdigest()


def matched_already(path: str, fingerprint: str, s3) -> bool:
    """Whether the coefficients at `path` were matched from what `fingerprint` digests
    (a rerun of an export with intensity matching: trial I measured every pair again)."""
    doc = json_if_readable(path, s3)   # unreadable, missing or damaged: matched again
    kept = doc.get("reuse") if isinstance(doc, dict) else None
    return isinstance(kept, dict) and kept.get("fingerprint") == fingerprint
