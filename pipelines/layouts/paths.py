"""Layouts: where the array of each (timepoint, channel, level) lives inside a container.

- `ome` (Zarr v2 and v3): one array per level at "0", "1", …; channels and timepoints
  are leading axes (t, c) of that array, present only when there is more than one.
- `n5-viewer` (N5): one 3D array per channel and level at "c{n}/s{k}"; one timepoint.
- `bdv` (N5, BigDataViewer): "setup{n}/timepoint{t}/s{k}".
Pure code: no I/O.
"""

from __future__ import annotations

from dataclasses import replace

from pipelines.formats.base import ArraySpec


def array_path(layout: str, t: int, c: int, level: int) -> str:
    if layout == "ome":
        return str(level)
    if layout == "n5-viewer":
        return f"c{c}/s{level}"
    if layout == "bdv":
        return f"setup{c}/timepoint{t}/s{level}"
    raise ValueError(f"unknown layout {layout!r}")


def lead_axes(layout: str, timepoints: int, channels: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Sizes and names of the leading (t, c) axes of each array in this layout."""
    if layout != "ome":
        return (), ()
    axes = [(n, name) for n, name in ((timepoints, "t"), (channels, "c")) if n > 1]
    return tuple(n for n, _ in axes), tuple(name for _, name in axes)


def lead_index(layout: str, timepoints: int, channels: int, t: int, c: int) -> tuple[int, ...]:
    """The (t, c) position inside the array for this layout (empty when the array is 3D)."""
    if layout != "ome":
        return ()
    return tuple(i for n, i in ((timepoints, t), (channels, c)) if n > 1)


def level_array(base: ArraySpec, layout: str, timepoints: int, channels: int,
                t: int, c: int, level: int, shape, resolution) -> ArraySpec:
    """The ArraySpec of one level for (t, c): the base spec with this level's path and shape."""
    lead, names = lead_axes(layout, timepoints, channels)
    return replace(base, path=array_path(layout, t, c, level), shape=tuple(shape),
                   resolution=tuple(resolution), lead=lead, lead_names=names)
