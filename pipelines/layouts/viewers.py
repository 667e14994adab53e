"""Metadata documents that make viewers open our output: OME-NGFF 0.4 and 0.5, the n5-viewer
and BigDataViewer N5 layouts, and BigDataViewer's XML. Pure functions: dicts and strings in,
dicts and strings out; the caller writes them (metadata last).

Every function takes the pyramid as `levels` (one ArraySpec per level, level 0 first) and
`factors` (cumulative downsampling per level, x, y, z; level 0 is (1, 1, 1)). Voxel sizes
come from level 0's `resolution` (µm) times the level's factors, so the specs of coarser
levels may carry either resolution. Translations are µm, x, y, z.

Where voxel (0, 0, 0) of a coarser level sits is a convention each viewer fixes:
n5-viewer (n5-ij) and BigDataViewer derive it from `downsamplingFactors` themselves and put
it half a coarse voxel in, at (f - 1) / 2 fine voxels, which is right for block-mean (and
block-mode) downsampling. OME-NGFF states it per level: `level_translations` computes the
same placement, so all layouts show the same pixels at the same place.
"""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.formats.base import ArraySpec
from pipelines.geometry import triple

Vec3 = tuple[float, float, float]

OME_AXIS_TYPES = {"t": "time", "c": "channel"}
# A single channel is shown white; several get distinct colours (green, magenta, cyan, …).
PALETTE = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF", "FF8000", "8000FF")


@dataclass(frozen=True)
class Channel:
    """One channel as viewers show it: a label, the display window (the data's min and max
    are a good default) and an optional colour (6 hex digits; None picks a default)."""

    label: str
    start: float
    end: float
    color: str | None = None


# ---------------------------------------------------------------- shared geometry

def level_resolution(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]], k: int) -> Vec3:
    """Voxel size (µm, x, y, z) of level `k`: level 0's resolution times the level's factors."""
    _check(levels, factors)
    return triple(plain(float(r) * f) for r, f in zip(levels[0].resolution, factors[k]))


def level_translations(resolution: Sequence[float], factors: Sequence[Sequence[int]],
                       origin: Sequence[float] = (0.0, 0.0, 0.0)) -> list[Vec3]:
    """Per-level translations (µm, x, y, z) for block-mean/mode downsampling: the centre of a
    coarse voxel is the centre of the f fine voxels it summarises, (f - 1) / 2 fine voxels in
    from `origin` (the physical position of level 0's voxel (0, 0, 0))."""
    return [triple(plain(float(o) + (f - 1) / 2 * float(r)) for o, f, r in zip(origin, fs, resolution))
            for fs in factors]


def default_color(index: int, count: int) -> str:
    """White for a single channel, else a palette colour per channel."""
    return "FFFFFF" if count == 1 else PALETTE[index % len(PALETTE)]


def image_group(levels: Sequence[ArraySpec]) -> str:
    """The group holding the levels (the parent of every level's path; "" is the root)."""
    parents = {posixpath.dirname(spec.path) for spec in levels}
    if len(parents) != 1:
        raise ValueError(f"pyramid levels must share one parent group, got {sorted(parents)}")
    return parents.pop()


def _check(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]]) -> None:
    if not levels or len(levels) != len(factors):
        raise ValueError(f"need one factor triple per level: {len(levels)} levels, "
                         f"{len(factors)} factors")
    if tuple(factors[0]) != (1, 1, 1):
        raise ValueError(f"level 0 must have factors (1, 1, 1), got {tuple(factors[0])}")


# ---------------------------------------------------------------- OME-NGFF

def ome_axes(lead_names: Sequence[str], time_unit: str | None = None) -> list[dict]:
    """Axes t, c (those present in `lead_names`), then z, y, x in micrometers."""
    if list(lead_names) not in (["t", "c"], ["t"], ["c"], []):
        raise ValueError(f"lead axes must be t, c, both (in that order) or none; "
                         f"got {list(lead_names)}")
    axes = []
    for name in lead_names:
        axis = {"name": name, "type": OME_AXIS_TYPES[name]}
        if name == "t" and time_unit:
            axis["unit"] = time_unit
        axes.append(axis)
    return axes + [{"name": n, "type": "space", "unit": "micrometer"} for n in ("z", "y", "x")]


def ome_multiscale(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]], *,
                   translations: Sequence[Sequence[float]] | None = None, name: str = "image",
                   time_unit: str | None = None, time_interval: float = 1.0,
                   downsampling: str | None = None) -> dict:
    """One `multiscales` entry (without "version"): axes and one dataset per level, paths
    relative to `image_group(levels)`. A translation is written only where it is non-zero.
    `downsampling` (e.g. "mean") fills the optional `type` and `metadata`, which the
    spec's strict schemas require."""
    _check(levels, factors)
    group, lead = image_group(levels), levels[0].lead_names
    if any(spec.lead_names != lead for spec in levels):
        raise ValueError("every level must have the same lead axes")
    datasets = []
    for k, spec in enumerate(levels):
        lead_scale = [float(time_interval) if n == "t" else 1.0 for n in lead]
        scale = lead_scale + list(reversed(level_resolution(levels, factors, k)))
        transforms = [{"type": "scale", "scale": scale}]
        shift = [float(v) for v in translations[k]] if translations is not None else [0.0] * 3
        if any(shift):
            transforms.append({"type": "translation",
                               "translation": [0.0] * len(lead) + shift[::-1]})
        path = posixpath.relpath(spec.path, group) if group else spec.path
        datasets.append({"path": path, "coordinateTransformations": transforms})
    multiscale: dict = {"name": name, "axes": ome_axes(lead, time_unit), "datasets": datasets}
    if downsampling:
        multiscale["type"] = downsampling
        multiscale["metadata"] = {"description": f"block {downsampling} downsampling",
                                  "factors_xyz": [[int(f) for f in fs] for fs in factors]}
    return multiscale


def omero(levels: Sequence[ArraySpec], channels: Sequence[Channel], name: str = "image") -> dict:
    """The transitional `omero` block: per channel label, colour, window and active.

    `window.min`/`max` is the range the type can hold (the data's range for floats), and
    `start`/`end` the display window the caller measured.
    """
    spec = levels[0]
    dtype = spec.np_dtype
    entries = []
    for i, ch in enumerate(channels):
        lo, hi = ((float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)) if dtype.kind in "ui"
                  else (float(min(ch.start, ch.end)), float(max(ch.start, ch.end))))
        color = (ch.color or default_color(i, len(channels))).upper()
        if len(color) != 6 or any(c not in "0123456789ABCDEF" for c in color):
            raise ValueError(f"channel {ch.label!r}: color must be 6 hex digits, got {color!r}")
        entries.append({"label": ch.label, "color": color, "active": True,
                        "window": {"min": lo, "max": hi,
                                   "start": float(ch.start), "end": float(ch.end)}})
    depth = spec.shape[2]
    return {"name": name, "channels": entries,
            "rdefs": {"defaultT": 0, "defaultZ": depth // 2, "model": "color"}}


def _has_channel_axis(levels: Sequence[ArraySpec]) -> bool:
    """Whether the image has a `c` axis: an `omero` block describes the channels along it,
    and validators (ome-zarr-py's) refuse one without it, so a one-channel image (no `c`
    axis) gets none."""
    return "c" in levels[0].lead_names


def _channels_match(levels: Sequence[ArraySpec], channels: Sequence[Channel]) -> None:
    spec = levels[0]
    count = spec.lead[spec.lead_names.index("c")] if "c" in spec.lead_names else 1
    if channels and len(channels) != count:
        raise ValueError(f"{len(channels)} channels described but the array holds {count}")


def ome_v04_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]],
                       channels: Sequence[Channel] = (), **options) -> dict:
    """The image group's `.zattrs` for OME-NGFF 0.4 (Zarr v2). `options` are those of
    `ome_multiscale` (translations, name, time_unit, time_interval, downsampling).
    Without channels, or without a `c` axis (one channel), there is no `omero` block."""
    _channels_match(levels, channels)
    attrs: dict = {"multiscales": [{"version": "0.4", **ome_multiscale(levels, factors, **options)}]}
    if channels and _has_channel_axis(levels):
        attrs["omero"] = omero(levels, channels, options.get("name", "image"))
    return attrs


def ome_v05_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]],
                       channels: Sequence[Channel] = (), **options) -> dict:
    """The image group's zarr.json `attributes` for OME-NGFF 0.5 (Zarr v3): everything under
    `ome`, version there and not per multiscale. The arrays' `dimension_names` (the specs'
    lead names + z, y, x) are the axis names, as 0.5 requires."""
    _channels_match(levels, channels)
    ome: dict = {"version": "0.5", "multiscales": [ome_multiscale(levels, factors, **options)]}
    if channels and _has_channel_axis(levels):
        ome["omero"] = omero(levels, channels, options.get("name", "image"))
    return {"ome": ome}


# ---------------------------------------------------------------- n5-viewer (c{n}/s{k})

def _pixel_resolution(levels: Sequence[ArraySpec]) -> dict:
    return {"unit": "um", "dimensions": [plain(r) for r in levels[0].resolution]}


def _affine(translation: Sequence[float]) -> list[list[float]]:
    """An n5-viewer `affineTransform` (3 rows of 4) that shifts by `translation` µm."""
    return [[1.0 if c == r else (plain(translation[r]) if c == 3 else 0.0) for c in range(4)]
            for r in range(3)]


def n5_viewer_dataset_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]],
                                 level: int, translation: Sequence[float] = (0, 0, 0)) -> dict:
    """Attributes to merge into scale dataset `c{n}/s{level}`'s attributes.json.

    `pixelResolution` is level 0's voxel size on every level: n5-ij multiplies it by
    `downsamplingFactors` itself and refuses scales whose pixelResolution differ. The level-0
    `translation` (µm) goes in `affineTransform`, which n5-ij applies after the scaling.
    """
    _check(levels, factors)
    attrs = {"downsamplingFactors": [int(f) for f in factors[level]],
             "pixelResolution": _pixel_resolution(levels)}
    if any(translation):
        attrs["affineTransform"] = _affine(translation)
    return attrs


def n5_viewer_channel_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]],
                                 translation: Sequence[float] = (0, 0, 0), name: str = "") -> dict:
    """The channel group `c{n}`'s attributes.json: `scales` (cumulative factors per level),
    `pixelResolution`, if any `affineTransform`, and the channel's `name` — what
    n5-viewer reads from the group (its README's example names the data with `name`;
    trial P: the channel names were nowhere in an n5-viewer container)."""
    _check(levels, factors)
    attrs: dict = {"name": name} if name else {}
    attrs |= {"scales": [[int(f) for f in fs] for fs in factors],
              "pixelResolution": _pixel_resolution(levels)}
    if any(translation):
        attrs["affineTransform"] = _affine(translation)
    return attrs


# ---------------------------------------------------------------- BigDataViewer N5

def bdv_path(setup: int, timepoint: int, level: int | None = None) -> str:
    """`setup{n}/timepoint{t}[/s{k}]`, unpadded, as bdv-core's BdvN5Format spells them."""
    path = f"setup{setup}/timepoint{timepoint}"
    return path if level is None else f"{path}/s{level}"


def bdv_setup_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]]) -> dict:
    """The `setup{n}` group's attributes.json: what N5ImageLoader needs to open the setup."""
    _check(levels, factors)
    return {"downsamplingFactors": [[int(f) for f in fs] for fs in factors],
            "dataType": levels[0].dtype}


def bdv_timepoint_attributes(levels: Sequence[ArraySpec]) -> dict:
    """The `timepoint{t}` group's attributes (optional; BDV's exporter writes them for Paintera)."""
    return {"multiScale": True, "resolution": [plain(r) for r in levels[0].resolution]}


def bdv_dataset_attributes(levels: Sequence[ArraySpec], factors: Sequence[Sequence[int]],
                           level: int) -> dict:
    """Attributes to merge into `s{level}`'s attributes.json (as BDV's exporter writes), with
    level 0's pixelResolution, which n5-ij scales by `downsamplingFactors` itself."""
    return {"downsamplingFactors": [int(f) for f in factors[level]],
            "pixelResolution": _pixel_resolution(levels)}


def bdv_xml(level0: ArraySpec, n5_name: str, channel_names: Sequence[str], timepoints: int = 1,
            translation: Sequence[float] = (0, 0, 0)) -> str:
    """The SpimData XML that opens the BDV N5 container `n5_name` (relative to the XML's
    folder): one setup per channel, timepoints 0 … timepoints-1, each view registered by the
    voxel size (µm) on the diagonal and `translation` (µm, x, y, z) in the last column."""
    if timepoints < 1 or not channel_names:
        raise ValueError("bdv_xml needs at least one channel and one timepoint")
    root = ET.Element("SpimData", version="0.2")
    ET.SubElement(root, "BasePath", type="relative").text = "."
    seq = ET.SubElement(root, "SequenceDescription")
    loader = ET.SubElement(seq, "ImageLoader", format="bdv.n5", version="1.1")
    ET.SubElement(loader, "n5", type="relative").text = n5_name
    setups = ET.SubElement(seq, "ViewSetups")
    size = " ".join(str(int(n)) for n in level0.shape)
    voxel = " ".join(_number(r) for r in level0.resolution)
    for i, name in enumerate(channel_names):
        setup = ET.SubElement(setups, "ViewSetup")
        ET.SubElement(setup, "id").text = str(i)
        ET.SubElement(setup, "name").text = name
        ET.SubElement(setup, "size").text = size
        vs = ET.SubElement(setup, "voxelSize")
        ET.SubElement(vs, "unit").text = "µm"
        ET.SubElement(vs, "size").text = voxel
        ET.SubElement(ET.SubElement(setup, "attributes"), "channel").text = str(i)
    attributes = ET.SubElement(setups, "Attributes", name="channel")
    for i, name in enumerate(channel_names):
        channel = ET.SubElement(attributes, "Channel")
        ET.SubElement(channel, "id").text = str(i)
        ET.SubElement(channel, "name").text = name
    tps = ET.SubElement(seq, "Timepoints", type="range")
    ET.SubElement(tps, "first").text = "0"
    ET.SubElement(tps, "last").text = str(timepoints - 1)
    regs = ET.SubElement(root, "ViewRegistrations")
    affine = " ".join(_number(v) for v in bdv_affine(level0.resolution, translation))
    for t in range(timepoints):
        for i in range(len(channel_names)):
            reg = ET.SubElement(regs, "ViewRegistration", timepoint=str(t), setup=str(i))
            transform = ET.SubElement(reg, "ViewTransform", type="affine")
            ET.SubElement(transform, "Name").text = "calibration"
            ET.SubElement(transform, "affine").text = affine
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def plain(value: float) -> float:
    """A position as a person writes it: products such as 0.4 × 3 µm are 1.2, not
    1.2000000000000002 (12 significant digits are far below any voxel size's accuracy),
    in the XML and in the JSON documents alike (trial P: -1.2000000000000002 in an
    n5-viewer affineTransform)."""
    return float(f"{float(value):.12g}")


def _number(value: float) -> str:
    return repr(plain(value))


def bdv_affine(resolution: Sequence[float], translation: Sequence[float]) -> list[float]:
    """The 3 × 4 row-major affine BDV stores: voxel size on the diagonal, translation last."""
    return [float(resolution[r]) if c == r else (float(translation[r]) if c == 3 else 0.0)
            for r in range(3) for c in range(4)]
