"""Every metadata document of a planned output, in the order the commit writes them.

The format modules know each array's own document; `layouts.viewers` knows what
OME-Zarr readers, n5-viewer and BigDataViewer look for. This module joins them for the
plan's layout: array documents (all levels) first, then groups with the root last, then
files that live next to the container (the BigDataViewer XML).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipelines.commit.records import Sidecars
from pipelines.formats import format_module
from pipelines.formats.base import json_bytes
from pipelines.layouts import viewers
from pipelines.plan import ExportPlan
from pipelines.storage import uri as uris

Document = tuple[str, bytes]


@dataclass
class Documents:
    """The metadata documents of one output as (key, bytes), grouped in the order the commit
    writes them: arrays, then groups, then files beside the container."""

    arrays: list[Document] = field(default_factory=list)
    groups: list[Document] = field(default_factory=list)   # root last
    beside: list[Document] = field(default_factory=list)   # keys relative to the container's folder


def documents(plan: ExportPlan, ranges) -> Documents:
    """All documents for `plan`; `ranges` is each channel's (min, max) at level 0."""
    out = plan.output
    factors = [out.cumulative(k) for k in range(out.levels)]
    channels = [viewers.Channel(name, lo, hi) for name, (lo, hi) in zip(plan.channel_names, ranges)]
    origin = tuple(o * r for o, r in zip(out.base.offset, out.base.resolution))  # µm
    builders = {"ome": _ome, "n5-viewer": _n5_viewer, "bdv": _bdv}
    return builders[out.layout](plan, factors, channels, origin)


def container_keys(plan: ExportPlan) -> set[str]:
    """The keys of the metadata documents the commit writes inside the container."""
    docs = documents(plan, [(0, 0)] * plan.output.channels)   # the keys do not depend on ranges
    return {key for key, _ in docs.arrays + docs.groups}


def _ome(plan: ExportPlan, factors, channels, origin) -> Documents:
    out, fmt = plan.output, format_module(plan.output.format)
    levels = [out.array(0, 0, k) for k in range(out.levels)]
    options = {"translations": viewers.level_translations(out.base.resolution, factors, origin),
               "name": uris.stem(out.uri), "downsampling": out.downsample,
               "time_unit": out.time_unit or None, "time_interval": out.time_interval}
    docs = Documents(arrays=[d for spec in levels for d in fmt.array_documents(spec)])
    # OME-Zarr 0.4 is written on Zarr v2, 0.5 on Zarr v3
    ome = viewers.ome_v04_attributes if out.format == "zarr2" else viewers.ome_v05_attributes
    docs.groups = fmt.group_attributes("", ome(levels, factors, channels, **options))
    return docs


def _n5_viewer(plan: ExportPlan, factors, channels, origin) -> Documents:
    out, fmt = plan.output, format_module("n5")
    docs = Documents()
    for c in range(out.channels):
        levels = [out.array(0, c, k) for k in range(out.levels)]
        for k, spec in enumerate(levels):
            extra = viewers.n5_viewer_dataset_attributes(levels, factors, k, origin)
            docs.arrays += [_merged(d, extra) for d in fmt.array_documents(spec)]
        attrs = viewers.n5_viewer_channel_attributes(levels, factors, origin, channels[c].label)
        docs.groups += fmt.group_attributes(f"c{c}", attrs)
    docs.groups += fmt.group_documents(out.array(0, 0, 0))
    return docs


def _bdv(plan: ExportPlan, factors, channels, origin) -> Documents:
    out, fmt = plan.output, format_module("n5")
    docs = Documents()
    for c in range(out.channels):
        for t in range(out.timepoints):
            levels = [out.array(t, c, k) for k in range(out.levels)]
            for k, spec in enumerate(levels):
                extra = viewers.bdv_dataset_attributes(levels, factors, k)
                docs.arrays += [_merged(d, extra) for d in fmt.array_documents(spec)]
            docs.groups += fmt.group_attributes(viewers.bdv_path(c, t),
                                                viewers.bdv_timepoint_attributes(levels))
        docs.groups += fmt.group_attributes(f"setup{c}", viewers.bdv_setup_attributes(levels, factors))
    docs.groups += fmt.group_documents(out.array(0, 0, 0))
    names = Sidecars.of(out.uri)
    xml = viewers.bdv_xml(out.array(0, 0, 0), names.name, list(plan.channel_names),
                          out.timepoints, origin)
    docs.beside.append((names.bdv_xml, xml.encode()))
    return docs


def _merged(document: Document, extra: dict) -> Document:
    """An attributes.json with `extra` merged over it (viewer attributes win)."""
    key, data = document
    return key, json_bytes({**json.loads(data), **extra})
