"""Registering tiles placed by affines (a BigStitcher project's views, a tile JSON's
`transform`s): which are compared, where the solution moves them, and the stitched XML.

Views whose transforms share one linear part L (the grid tiles of one angle) differ only
by translations in world space, so they are registered exactly as tile JSON tiles are: in
their own pixel space, each at position L⁻¹ · t (t its world translation). Views with
another linear part (other angles, other scans) form groups of their own; pairs across
groups are not measured and are counted in the report. A solved pixel-space correction δ
becomes the world translation L · δ, written as BigStitcher does: a `ViewTransform`
named "Stitching Transform" prepended to the view's registration, in
`<name>-stitched.xml` beside the project. The registered channel's corrections apply to
the views of the same tile number in every channel and timepoint; a tile JSON's tiles
have the correction prepended to their `transform` (`moved`).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipelines.geometry import triple
from pipelines.tiles import Tile, TileSet
from pipelines.tiles.bigstitcher import Project
from pipelines.transforms import Affine, as_affine, compose, linear_part, offset_of, translation

STITCHING_TRANSFORM = "Stitching Transform"


@dataclass(frozen=True)
class Reference:
    """Tiles in their pixel spaces, and what maps a solved pixel position back: views
    placed by affines (a project's, or a tile JSON's `transform`s) as translation tiles
    at L⁻¹ · t, grouped by their linear part L. Tiles placed by positions are their own
    pixel space (L = I), as they are."""

    tiles: TileSet                        # translation tiles at L⁻¹ · t, numbered as the input's
    linear: dict[int, tuple[float, ...]]  # tile number → its linear part L (9 numbers)
    group: dict[int, int]                 # tile number → its group (one per linear part)
    skipped: int                          # world-overlapping tile pairs of different groups
    exact: frozenset[int]                 # tiles placed by affines: fusion honours their sub-voxel position

    def same_group(self, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(a, b) for a, b in pairs if self.group[a] == self.group[b]]

    def world_corrections(self, positions: Mapping[int, Sequence[float]]) -> dict[int, np.ndarray]:
        """Tile number → the world translation its solved pixel position adds."""
        out = {}
        for t in self.tiles:
            delta = np.asarray(positions[t.index], dtype=np.float64) - np.asarray(t.position)
            out[t.index] = np.asarray(self.linear[t.index], dtype=np.float64).reshape(3, 3) @ delta
        return out


@dataclass(frozen=True)
class ProjectReference(Reference):
    """A project's registered channel (`reference`), and the project its XML comes from."""

    project: Project


def in_pixel_space(views: TileSet) -> Reference:
    """`views` as translation tiles in their pixel spaces (see `Reference`)."""
    linear: dict[int, tuple[float, ...]] = {}
    group: dict[int, int] = {}
    parts: dict[tuple[float, ...], int] = {}
    tiles = []
    for v in views:
        affine = v.transform or translation(v.position)
        part = linear_part(affine)
        group[v.index] = parts.setdefault(part, len(parts))
        linear[v.index] = part
        pixel = np.linalg.solve(np.asarray(part).reshape(3, 3), np.asarray(offset_of(affine)))
        # a tile placed by its position keeps it exactly (L = I: the same numbers)
        position = v.position if v.transform is None else tuple(float(p) for p in pixel)
        tiles.append(replace(v, position=position, transform=None))
    skipped = sum(1 for a, b in itertools.combinations(views, 2)
                  if group[a.index] != group[b.index] and not a.box.intersect(b.box).is_empty())
    exact = frozenset(v.index for v in views if v.transform is not None)
    return Reference(TileSet(tuple(tiles), views.source), linear, group, skipped, exact)


def reference(project: Project, channel: int) -> ProjectReference:
    """The views of timepoint 0 and `channel`, as translation tiles in pixel space."""
    ref = in_pixel_space(project.tiles[0][channel])
    return ProjectReference(ref.tiles, ref.linear, ref.group, ref.skipped, ref.exact, project)


def moved(tiles: TileSet, ref: Reference, positions: Mapping[int, Sequence[float]]) -> TileSet:
    """`tiles` (any channel or timepoint of the registered geometry, numbered as `ref`'s)
    at their solved positions: a tile placed by its position takes the solved one; a tile
    placed by an affine has its world correction prepended (its translation moves)."""
    corrections = ref.world_corrections(positions)

    def one(t: Tile) -> Tile:
        if t.transform is None:
            return replace(t, position=triple(float(p) for p in positions[t.index]))
        transform = compose(translation(corrections[t.index].tolist()), t.transform)
        return replace(t, position=offset_of(transform), transform=transform)
    return replace(tiles, tiles=tuple(one(t) for t in tiles))


def stitched_xml(text: str, ref: ProjectReference, positions: Mapping[int, Sequence[float]],
                 earlier: str | None = None) -> bytes:
    """The project XML with a "Stitching Transform" prepended to every view that has a
    registered tile number (a previous one is replaced, so stitching twice does not stack).
    `earlier`, the stitched XML a registration of other views (`input.views`) wrote: the
    views not registered now keep its Stitching Transforms."""
    corrections = ref.world_corrections(positions)
    by_view = {}
    for row in ref.project.view_ids:
        for ids in row:
            for number, view in enumerate(ids):
                by_view[view] = corrections[number]
    kept = _stitching_by_view(earlier) if earlier else {}
    root = ET.fromstring(text)
    group = root.find("ViewRegistrations")
    assert group is not None  # the project was read from this text
    for registration in group.findall("ViewRegistration"):
        key = int(registration.get("timepoint", -1)), int(registration.get("setup", -1))
        if key not in by_view:
            if key in kept:
                for old in _stitching_transforms(registration):
                    registration.remove(old)
                registration.insert(0, kept[key])
            continue
        # The positions registered were those of the whole registration, an earlier
        # Stitching Transform included: the correction moves the view from there, so it
        # is prepended to the earlier one (one transform, not two).
        stitching = translation(by_view[key].tolist())
        for old in _stitching_transforms(registration):
            stitching = compose(stitching, _affine_of(old))
            registration.remove(old)
        transform = ET.Element("ViewTransform", type="affine")
        ET.SubElement(transform, "Name").text = STITCHING_TRANSFORM
        ET.SubElement(transform, "affine").text = " ".join(repr(float(v)) for v in stitching)
        _indent_as_siblings(transform, registration)
        registration.insert(0, transform)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _indent_as_siblings(transform: ET.Element, registration: ET.Element) -> None:
    """Give `transform`, about to become `registration`'s first child, the indentation of
    the children it joins (trial AS: it was written on one line with the next one)."""
    indent = registration.text
    if not indent or indent.strip():   # a file written without indentation stays so (trial AX)
        return
    step = "  " if "\t" not in indent else "\t"
    transform.text = indent + step
    for i, child in enumerate(transform):
        child.tail = indent + step if i < len(transform) - 1 else indent
    transform.tail = indent


def _affine_of(transform: ET.Element) -> Affine:
    """A ViewTransform's 12 numbers (the project was read, so they parse)."""
    return as_affine(float(v) for v in (transform.findtext("affine") or "").split())


def _stitching_transforms(registration: ET.Element) -> list[ET.Element]:
    return [t for t in registration.findall("ViewTransform")
            if (t.findtext("Name") or "").strip() == STITCHING_TRANSFORM]


def _stitching_by_view(text: str) -> dict[tuple[int, int], ET.Element]:
    """(timepoint, setup) → its Stitching Transform in a stitched XML; {} for a file that
    does not parse (it is replaced, as a damaged report is)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {}
    found = {}
    for registration in root.iter("ViewRegistration"):
        transforms = _stitching_transforms(registration)
        if transforms:
            key = int(registration.get("timepoint", -1)), int(registration.get("setup", -1))
            found[key] = transforms[0]
    return found
