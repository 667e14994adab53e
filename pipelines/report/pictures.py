"""Pictures for run reports and the stitching report: pure functions that return PNG bytes.

Only matplotlib's object API is used (`Figure` + `FigureCanvasAgg`, never pyplot): no
global state, so drawing is thread-safe and needs no display. matplotlib is imported
inside the functions because executors never draw and jobs that draw nothing should not
pay its import time. Every function returns the PNG as bytes so callers can put it into
any Store (local or S3); `save_png` is only for local paths. Per-axis values are x, y, z.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np

DPI = 100
MAX_WIDTH_IN = 16.0  # ≤ 1600 px at DPI
# Outline colours per z row: dark and muted, so they never look like the residual
# colormap (viridis) or the red of dropped links.
ROW_COLOURS = ("#222222", "#8c564b", "#1f5fa8", "#7f7f7f", "#e377c2", "#17becf")
DROPPED = "#e41a1c"
UNMATCHED = "#8a8a8a"

TileRow = tuple[int, Sequence[float], Sequence[float]]  # (index, position_xyz, size_xyz)
Link = tuple[int, int, float, bool]  # (i, j, residual in voxels, kept)


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # no "Software" stamp: the same inputs give byte-identical PNGs, like every other output
    # "tight": a legend below the panels was cut off where the panels' aspect left the
    # constrained layout no room for it (trial AS)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight",
                pad_inches=0.1)
    return buf.getvalue()


def save_png(data: bytes, path: str | os.PathLike) -> None:
    """Write PNG bytes to a local path atomically (temporary file, then `os.replace`)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _finite_tiles(rows) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """index → (position, size) as float arrays, dropping rows that cannot be drawn (NaN)."""
    out = {}
    for index, pos, size in rows or ():
        p, s = np.asarray(pos, float)[:3], np.asarray(size, float)[:3]
        if np.all(np.isfinite(p)) and np.all(np.isfinite(s)):
            out[int(index)] = (p, s)
    return out


def _z_rows(tiles: dict) -> dict[int, int]:
    """index → z row number: a new row starts when z moves by more than half a tile depth."""
    rows, row, start = {}, -1, -math.inf
    for i, (p, s) in sorted(tiles.items(), key=lambda kv: kv[1][0][2]):
        if p[2] - start > 0.5 * max(s[2], 1.0):
            row, start = row + 1, p[2]
        rows[i] = row
    return rows


def _anchors(tiles: dict, rows: dict[int, int]) -> dict[int, tuple[float, float]]:
    """Where each tile's label, links and arrow attach: its x-y centre, moved in y per z row
    so that stacked tiles (same x, y) keep apart labels and visible links between rows."""
    levels = max(rows.values(), default=0) + 1
    out = {}
    for i, (p, s) in tiles.items():
        dy = (rows.get(i, 0) - (levels - 1) / 2) * 0.18 * s[1] / max(levels - 1, 1)
        out[i] = (p[0] + s[0] / 2, p[1] + s[1] / 2 + dy)
    return out


def _draw_tiles(ax, tiles: dict, rows: dict[int, int], tile_pt: float) -> None:
    from matplotlib.collections import LineCollection

    levels = max(rows.values(), default=0) + 1
    anchor = _anchors(tiles, rows)
    # index labels only where they fit inside a tile on paper (thousands of tiles give
    # unreadable noise and take seconds to lay out)
    labels = tile_pt >= max(4.5 * len(str(max(tiles, default=0))) + 6, 10 * levels)
    for row in range(levels):
        segs, colour = [], ROW_COLOURS[row % len(ROW_COLOURS)]
        for i, (p, s) in tiles.items():
            if rows.get(i, 0) != row:
                continue
            # stacked tiles share x, y exactly: inset deeper rows by a hair and move their
            # labels so every row stays visible (cosmetic, well under a tile's width)
            d = 0.012 * row * min(s[0], s[1])
            x0, y0, x1, y1 = p[0] + d, p[1] + d, p[0] + s[0] - d, p[1] + s[1] - d
            segs.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
            if labels:  # on a pale box above links and arrows, so it stays legible
                ax.text(*anchor[i], str(i), ha="center", va="center", fontsize=7, color=colour,
                        zorder=6, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none",
                                            alpha=0.75))
        alpha = 0.95 - 0.35 * row / max(levels - 1, 1)
        ax.add_collection(LineCollection(segs, colors=colour, linewidths=0.8, alpha=alpha,
                                         label=f"z layer {row}: outline and label" if levels > 1
                                         else None))


def _draw_links(fig, ax, tiles: dict, rows: dict[int, int], links, unmatched,
                tile_pt: float) -> list:
    """The measured pairs on the registered layout, with legend handles explaining them.

    A pair inside one z layer is a line between its tiles' anchors; a pair between z
    layers is a marker at the centre of the two tiles' x-y overlap (a line would cross the
    layer's own links and the grid). Kept pairs are coloured by residual on a scale up to
    the largest kept residual; dropped ones are red (dashed line, ×); pairs that found no
    match are grey (dotted line, ○)."""
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    anchor = _anchors(tiles, rows)
    kind: dict[str, list] = {"kept": [], "dropped": [], "unmatched": []}
    residuals: dict[str, list[float]] = {"line": [], "marker": []}
    for i, j, residual, ok in links or ():
        if int(i) in anchor and int(j) in anchor:
            kind["kept" if ok else "dropped"].append((int(i), int(j), residual))
    kind["unmatched"] = [(int(i), int(j), None) for i, j in unmatched or ()
                         if int(i) in anchor and int(j) in anchor]
    split = {name: _split_by_layer(pairs, tiles, rows, anchor) for name, pairs in kind.items()}
    kept_res = [float(r) for _, _, r in kind["kept"] if r is not None and math.isfinite(r)]
    top = max(kept_res, default=0.0)
    norm = Normalize(0.0, top if top > 0 else 1.0)   # the residuals kept, not a fixed range
    cmap = colormaps["viridis"].with_extremes(bad="#bbbbbb")  # NaN residual → grey
    width = 2.0 if tile_pt > 40 else 0.8   # thinner when tiles are small on paper
    handles = []
    lines, points = split["kept"]
    if lines or points:
        for part in ("line", "marker"):
            chosen = lines if part == "line" else points
            residuals[part] = [float(r) if r is not None else math.nan for _, r in chosen]
        if lines:
            lc = LineCollection([seg for seg, _ in lines], cmap=cmap, norm=norm,
                                linewidths=width, zorder=3)
            lc.set_array(np.ma.masked_invalid(np.asarray(residuals["line"])))
            ax.add_collection(lc)
            handles.append(Line2D([], [], color=cmap(0.35), lw=2,
                                  label=f"pair in one z layer ({len(lines)})"))
        if points:
            xy = np.array([p for p, _ in points])
            ax.scatter(xy[:, 0], xy[:, 1], c=np.ma.masked_invalid(np.asarray(residuals["marker"])),
                       cmap=cmap, norm=norm, marker="D", s=36 if tile_pt > 40 else 10,
                       edgecolors="white", linewidths=0.5, zorder=4)
            handles.append(Line2D([], [], color=cmap(0.35), ls="none", marker="D", ms=6,
                                  label=f"pair between z layers, at its overlap ({len(points)})"))
        from matplotlib.cm import ScalarMappable
        fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="residual of kept pairs (voxels)",
                     shrink=0.8)
    for name, colour, style, marker in (("dropped", DROPPED, (0, (4, 3)), "x"),
                                        ("unmatched", UNMATCHED, (0, (1, 2)), "o")):
        lines, points = split[name]
        if lines:
            ax.add_collection(LineCollection([seg for seg, _ in lines], colors=colour,
                                             linewidths=1.5, linestyles=style, zorder=4))
        if points:
            xy = np.array([p for p, _ in points])
            paint = {"facecolors": "none", "edgecolors": colour} if marker == "o" else {"c": colour}
            ax.scatter(xy[:, 0], xy[:, 1], marker=marker, s=40 if tile_pt > 40 else 12,
                       linewidths=1.5, zorder=4, **paint)
        if lines or points:
            words = "dropped as inconsistent" if name == "dropped" else "no match, or below min_score"
            handles.append(Line2D([], [], color=colour, lw=1.5, ls=style, marker=marker,
                                  mfc="none" if marker == "o" else colour,
                                  label=f"{words} ({len(lines) + len(points)})"))
    return handles


def _split_by_layer(pairs, tiles: dict, rows: dict[int, int], anchor: dict) -> tuple[list, list]:
    """(segment, residual) for pairs inside one z layer; (point, residual) for pairs
    between layers, the point being the centre of the two tiles' x-y overlap."""
    lines, points = [], []
    for i, j, residual in pairs:
        if rows.get(i, 0) == rows.get(j, 0):
            lines.append(([anchor[i], anchor[j]], residual))
            continue
        (pi, si), (pj, sj) = tiles[i], tiles[j]
        lo, hi = np.maximum(pi[:2], pj[:2]), np.minimum(pi[:2] + si[:2], pj[:2] + sj[:2])
        points.append((tuple((lo + hi) / 2), residual))
    return lines, points


def _draw_shifts(ax, before: dict, after: dict, rows: dict[int, int], tile_pt: float) -> list:
    """Arrows from stage to registered centre, magnified so that shifts of a few voxels show."""
    from matplotlib.lines import Line2D

    common = [i for i in after if i in before]
    if not common:
        return []
    a, b = _anchors(before, rows), _anchors(after, rows)
    start = np.array([a[i] for i in common])
    shift = np.array([b[i] for i in common]) - start
    longest = float(np.hypot(shift[:, 0], shift[:, 1]).max())
    if longest == 0:
        return []
    tile_w = float(np.median([min(after[i][1][0], after[i][1][1]) for i in common]))
    if tile_pt < 25:  # arrows a few points long are noise, not information
        return []
    gain = max(1.0, 0.35 * tile_w / longest)  # the longest arrow ≈ a third of a tile
    ax.quiver(start[:, 0], start[:, 1], shift[:, 0] * gain, shift[:, 1] * gain,
              angles="xy", scale_units="xy", scale=1.0, color="#d95f02", width=0.003,
              alpha=0.85, zorder=5)
    # a plain ">" marker: mathtext markers go through a process-wide TextToPath, which is
    # not thread-safe (glyph errors when reports are drawn in parallel)
    return [Line2D([], [], color="#d95f02", lw=1.5, marker=">", ms=6,
                   label=f"stage → registered shift in x, y (×{gain:.3g}, max {longest:.3g} vox)")]


def _extent(panels: list[dict]) -> tuple[float, float, float, float, float]:
    """x0, y0, x1, y1 of all tiles of all panels (at least 1 voxel wide) and a margin."""
    boxes = [(p[0], p[1], p[0] + s[0], p[1] + s[1]) for t in panels for p, s in t.values()]
    x0, y0, x1, y1 = np.array(boxes).T if boxes else np.array([[0], [0], [1], [1]])
    x0, y0 = float(x0.min()), float(y0.min())
    x1, y1 = max(float(x1.max()), x0 + 1), max(float(y1.max()), y0 + 1)
    return x0, y0, x1, y1, 0.04 * max(x1 - x0, y1 - y0)


def tile_layout_png(before: Sequence[TileRow], after: Sequence[TileRow] | None,
                    links: Sequence[Link], title: str = "",
                    unmatched: Sequence[tuple[int, int]] = ()) -> bytes:
    """x-y layout of the tiles at stage positions (left) and registered positions (right).

    `before`/`after` hold `(index, position_xyz, size_xyz)`; `links` hold
    `(i, j, residual_voxels, kept)` and are drawn in the right panel (`_draw_links`: lines
    inside a z layer, markers at the overlap between layers), coloured by residual (kept)
    or red (dropped); `unmatched` pairs, measured without a match, in grey; arrows show
    each tile's magnified shift. With `after=None` one panel (stage positions, with the
    links) is drawn. Tiles are outlined per z layer in different colours, and a deeper
    layer's labels sit lower in the tile; y points down as in images. The legend below the
    panels says all of this.
    """
    stage = _finite_tiles(before)
    moved = _finite_tiles(after) if after is not None else None
    rows = _z_rows(stage)
    shown = [stage] + ([moved] if moved is not None else [])
    x0, y0, x1, y1, pad = _extent(shown)
    npanel = len(shown)
    panel_w = 7.0 if npanel == 2 else 8.0
    height = min(max(panel_w * (y1 - y0) / (x1 - x0), 3.0), 9.0) + 0.8
    # a typical tile's size on paper, in points: equal aspect means the tighter direction
    # sets the scale (approximate: labels, colorbar and legend take some of the figure)
    scale = 72 * min(0.85 * panel_w / (x1 - x0 + 2 * pad), (height - 1.6) / (y1 - y0 + 2 * pad))
    tile_pt = scale * float(np.median([min(s[:2]) for _, s in stage.values()] or [0]))
    fig = _new_figure(panel_w * npanel + 1.2, height)
    axes = fig.subplots(1, npanel, sharex=True, sharey=True, squeeze=False)[0]
    names = ["stage positions", "registered positions"]
    for ax, tiles, name in zip(axes, shown, names):
        _draw_tiles(ax, tiles, {i: rows.get(i, 0) for i in tiles}, tile_pt)
        ax.set_title(name if npanel == 2 else "tile positions")
        ax.set_xlabel("x (voxels)")
        ax.set_ylabel("y (voxels)")
        ax.set_aspect("equal")
    ax = axes[-1]
    handles = _draw_links(fig, ax, shown[-1], {i: rows.get(i, 0) for i in shown[-1]}, links,
                          unmatched, tile_pt)
    if moved is not None:
        handles += _draw_shifts(ax, stage, moved, rows, tile_pt)
    axes[0].set_xlim(x0 - pad, x1 + pad)
    axes[0].set_ylim(y1 + pad, y0 - pad)  # inverted: y grows downwards, as in images
    row_handles = axes[0].get_legend_handles_labels()[0]  # z rows, only when > 1 row
    if npanel == 1:
        handles, row_handles = row_handles + handles, []
    for a, h in ((axes[0], row_handles), (ax, handles)):
        if h:  # below the panel: inside it would hide tiles
            a.legend(handles=h, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1),
                     ncols=min(len(h), 3), frameon=False)
    if title:
        fig.suptitle(title, parse_math=False)
    return _png(fig)


def _contrast(a: np.ndarray) -> tuple[float, float]:
    """Display range from the 0.1 / 99.9 percentiles of the non-zero values, so that empty
    (zero) regions stay black and a few hot pixels do not wash the image out."""
    values = a[np.isfinite(a) & (a != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [0.1, 99.9]))
    if hi <= lo:  # constant data: show it as bright, not as black
        return (0.0, hi) if hi > 0 else (hi - 1.0, hi)
    return lo, hi


def projections_png(images: Sequence[tuple], title: str = "") -> bytes:
    """Grey images (e.g. max-intensity projections per channel), one panel each.

    `images` holds `(label, array2d, aspect)` or `(label, array2d, aspect, pixel_um)`, array
    rows being y; `aspect` is the y/x pixel size ratio, so anisotropic projections keep
    their true proportions. With `pixel_um` (µm per pixel along x) the axes are in µm and a
    scale bar is drawn; without, the panel has no axes. Panels are in one row up to 3,
    otherwise in a grid. NaN/inf show black; empty arrays draw as one black pixel.
    """
    from matplotlib import colormaps

    items = []
    for label, array, aspect, *rest in images:
        a = np.array(array, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"projection {label!r}: expected a 2-d array, found shape {a.shape}")
        if a.size == 0:
            a = np.zeros((1, 1))
        aspect = float(aspect) if aspect and math.isfinite(aspect) and aspect > 0 else 1.0
        um = float(rest[0]) if rest and rest[0] and math.isfinite(rest[0]) and rest[0] > 0 else None
        items.append((str(label), a, aspect, um))
    n = max(len(items), 1)
    ncols = n if n <= 3 else math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    panel_w = min(5.0, MAX_WIDTH_IN / ncols)
    ratio = max((a.shape[0] * asp / a.shape[1] for _, a, asp, _ in items), default=1.0)
    panel_h = min(max(panel_w * ratio, 1.5), 8.0) + 0.6
    fig = _new_figure(panel_w * ncols, min(panel_h * nrows, 12.0) + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = colormaps["gray"].with_extremes(bad="black")
    for ax, (label, a, aspect, um) in zip(axes, items):
        lo, hi = _contrast(a)
        extent = None if um is None else (0.0, a.shape[1] * um, a.shape[0] * um * aspect, 0.0)
        ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=lo, vmax=hi, extent=extent,
                  aspect=aspect if um is None else "equal", interpolation="antialiased")
        ax.set_title(label, fontsize=10, parse_math=False)  # "$" in names is literal
        shown = np.any(np.isfinite(a) & (a != 0))  # else say so: a black panel looks broken
        contrast = f"display {lo:.4g} – {hi:.4g}" if shown else "no non-zero values"
        if um is None:
            ax.set_xlabel(contrast, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.set_xlabel(f"x (µm); grey levels {contrast.removeprefix('display ')}", fontsize=8)
            ax.set_ylabel("y (µm)", fontsize=8)
            ax.tick_params(labelsize=7)
            _scale_bar(ax, a.shape[1] * um)
    for ax in axes[len(items):]:
        ax.set_axis_off()
    if not items:
        axes[0].text(0.5, 0.5, "no images", ha="center", va="center")
    if title:
        fig.suptitle(title, parse_math=False)
    return _png(fig)


def scale_bar_length(width: float) -> float:
    """A round length (1, 2 or 5 × 10^k) of about a fifth of `width`."""
    if not width > 0 or not math.isfinite(width):
        return 0.0
    target = width / 5
    power = 10.0 ** math.floor(math.log10(target))
    return max(step * power for step in (1, 2, 5) if step * power <= target)


def _scale_bar(ax, width_um: float) -> None:
    """A white bar with its length in µm, bottom left, on a dark backing."""
    from matplotlib.patches import Rectangle

    length = scale_bar_length(width_um)
    if length <= 0:
        return
    x1, x0 = ax.get_xlim()[0], 0.0
    y_bottom = ax.get_ylim()[0]   # y grows downwards: the larger limit is at the bottom
    height = abs(ax.get_ylim()[0] - ax.get_ylim()[1])
    x0 = x1 + 0.05 * width_um
    y = y_bottom - 0.06 * height
    ax.add_patch(Rectangle((x0, y - 0.012 * height), length, 0.024 * height, color="white",
                           zorder=5))
    ax.text(x0 + length / 2, y - 0.03 * height, f"{length:g} µm", color="white", fontsize=8,
            ha="center", va="bottom", zorder=5,
            bbox=dict(boxstyle="round,pad=0.15", fc="black", ec="none", alpha=0.5))


def progress_png(finished_seconds: Sequence[float], total: int, title: str = "",
                 weights: Sequence[int] | None = None) -> bytes:
    """Blocks completed against seconds since the start, as a step plot, with `total` dashed.

    `finished_seconds` are finish times in any order, `weights` the blocks finished at each
    (1 each when None); NaN/inf entries are ignored.
    """
    t = np.asarray(list(finished_seconds), dtype=np.float64).ravel()
    w = np.ones(len(t), np.int64) if weights is None else np.asarray(list(weights), np.int64)
    order = np.argsort(t, kind="stable")
    t, w = t[order], w[order]
    t, w = t[np.isfinite(t)], w[np.isfinite(t)]
    start = min(0.0, float(t[0])) if len(t) else 0.0  # clocks may disagree a little
    done = np.concatenate([[0], np.cumsum(w)])
    fig = _new_figure(8.0, 4.0)
    ax = fig.subplots()
    # start at (0, 0) so the first block shows as a step, not as the first point
    ax.step(np.concatenate([[start], t]), done, where="post", color="#1f5fa8", lw=1.5,
            label=f"completed: {int(done[-1])}")
    ax.axhline(total, color="#444444", ls="--", lw=1.0, label=f"total: {total}")
    end = float(t[-1]) if len(t) else 0.0
    ax.set_xlim(start, max(end, 1.0) * 1.03)
    ax.set_ylim(0, max(total, int(done[-1]), 1) * 1.08)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("blocks completed")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, parse_math=False)
    return _png(fig)
