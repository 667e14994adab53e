"""Registering a BigStitcher project: which views are compared, and the stitched XML.

Views whose transforms share one linear part L (the grid tiles of one angle) differ only
by translations in world space, so they are registered exactly as tile JSON tiles are: in
their own pixel space, each at position L⁻¹ · t (t its world translation). Views with
another linear part (other angles, other scans) form groups of their own; pairs across
groups are not measured and are counted in the report. A solved pixel-space correction δ
becomes the world translation L · δ, written as BigStitcher does: a `ViewTransform`
named "Stitching Transform" prepended to the view's registration, in
`<name>-stitched.xml` beside the project. The registered channel's corrections apply to
the views of the same tile number in every channel and timepoint.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipelines.tiles import TileSet
from pipelines.tiles.bigstitcher import Project
from pipelines.transforms import IDENTITY, linear_part, offset_of

STITCHING_TRANSFORM = "Stitching Transform"


@dataclass(frozen=True)
class ProjectReference:
    """The registered channel's views in their pixel spaces, and what maps them back."""

    tiles: TileSet                        # translation tiles at L⁻¹ · t, numbered as the project's
    linear: dict[int, tuple[float, ...]]  # tile number → its linear part L (9 numbers)
    group: dict[int, int]                 # tile number → its group (one per linear part)
    skipped: int                          # world-overlapping view pairs of different groups
    project: Project

    def same_group(self, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(a, b) for a, b in pairs if self.group[a] == self.group[b]]

    def world_corrections(self, positions: Mapping[int, Sequence[float]]) -> dict[int, np.ndarray]:
        """Tile number → the world translation its solved pixel position adds."""
        out = {}
        for t in self.tiles:
            delta = np.asarray(positions[t.index], dtype=np.float64) - np.asarray(t.position)
            out[t.index] = np.asarray(self.linear[t.index], dtype=np.float64).reshape(3, 3) @ delta
        return out


def reference(project: Project, channel: int) -> ProjectReference:
    """The views of timepoint 0 and `channel`, as translation tiles in pixel space."""
    views = project.tiles[0][channel]
    linear: dict[int, tuple[float, ...]] = {}
    group: dict[int, int] = {}
    parts: dict[tuple[float, ...], int] = {}
    tiles = []
    for v in views:
        affine = v.transform or (IDENTITY[:3] + (v.position[0],) + IDENTITY[4:7] + (v.position[1],)
                                 + IDENTITY[8:11] + (v.position[2],))
        part = linear_part(affine)
        group[v.index] = parts.setdefault(part, len(parts))
        linear[v.index] = part
        pixel = np.linalg.solve(np.asarray(part).reshape(3, 3), np.asarray(offset_of(affine)))
        tiles.append(replace(v, position=tuple(float(p) for p in pixel), transform=None))
    skipped = sum(1 for a, b in itertools.combinations(views, 2)
                  if group[a.index] != group[b.index] and not a.box.intersect(b.box).is_empty())
    return ProjectReference(TileSet(tuple(tiles), views.source), linear, group, skipped, project)


def stitched_xml(text: str, ref: ProjectReference, positions: Mapping[int, Sequence[float]]) -> bytes:
    """The project XML with a "Stitching Transform" prepended to every view that has a
    registered tile number (a previous one is replaced, so stitching twice does not stack)."""
    corrections = ref.world_corrections(positions)
    by_view = {}
    for row in ref.project.view_ids:
        for ids in row:
            for number, view in enumerate(ids):
                by_view[view] = corrections[number]
    root = ET.fromstring(text)
    group = root.find("ViewRegistrations")
    assert group is not None  # the project was read from this text
    for registration in group.findall("ViewRegistration"):
        key = int(registration.get("timepoint", -1)), int(registration.get("setup", -1))
        if key not in by_view:
            continue
        for old in registration.findall("ViewTransform"):
            if (old.findtext("Name") or "").strip() == STITCHING_TRANSFORM:
                registration.remove(old)
        x, y, z = (float(v) for v in by_view[key])
        transform = ET.Element("ViewTransform", type="affine")
        ET.SubElement(transform, "Name").text = STITCHING_TRANSFORM
        ET.SubElement(transform, "affine").text = (
            f"1.0 0.0 0.0 {x!r} 0.0 1.0 0.0 {y!r} 0.0 0.0 1.0 {z!r}")
        registration.insert(0, transform)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
