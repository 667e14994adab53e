"""The report pictures: valid PNGs whose pixels show what the inputs say."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipelines.report import pictures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIRIDIS_LOW = (0.267, 0.005, 0.329)  # viridis(0)
VIRIDIS_HIGH = (0.993, 0.906, 0.144)  # viridis(1)


def decode(data: bytes) -> np.ndarray:
    """PNG bytes → (height, width, rgb) floats in [0, 1], after checking the signature."""
    from matplotlib.image import imread

    assert isinstance(data, bytes) and data.startswith(PNG_SIGNATURE)
    img = imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img.shape[1] <= 1600  # modest figures
    assert img[..., :3].std() > 0.01, "picture is uniform"
    return img[..., :3]


def count_near(img: np.ndarray, rgb, tol: float = 0.06) -> int:
    return int(np.all(np.abs(img - np.asarray(rgb)) < tol, axis=-1).sum())


def red_mask(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] > 0.75) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)


def grid_tiles(nx=2, ny=1, nz=1, size=(100, 100, 20), step=(90, 90, 18), jitter=0.0):
    rng = np.random.default_rng(0)
    rows, i = [], 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                pos = np.array([x * step[0], y * step[1], z * step[2]], float)
                rows.append((i, tuple(pos + rng.normal(0, jitter, 3) * (jitter > 0)), size))
                i += 1
    return rows


# --- tile_layout_png -----------------------------------------------------------------------


def test_layout_two_panels_are_wider_than_one_and_than_high():
    before = grid_tiles(3, 2, 2)
    after = grid_tiles(3, 2, 2, jitter=2.0)
    two = decode(pictures.tile_layout_png(before, after, [(0, 1, 0.5, True)], title="t"))
    one = decode(pictures.tile_layout_png(before, None, [(0, 1, 0.5, True)]))
    assert two.shape[1] > two.shape[0]
    assert two.shape[1] > one.shape[1]


def test_layout_legend_below_wide_panels_is_not_cut_off():
    """Trial AS: a 3 × 2 grid whose panels filled the figure's height had its legend cut at
    the bottom edge. Nothing drawn may touch the picture's edges."""
    before = [(0, (-8, -8, 0), (128, 128, 20)), (1, (117, 0, 0), (128, 128, 20)),
              (2, (210, -10, 0), (128, 128, 20)), (3, (-3, 118, 0), (128, 128, 20)),
              (4, (98, 115, 0), (128, 128, 20)), (5, (210, 114, 0), (128, 128, 20))]
    after = grid_tiles(3, 2, 1, size=(128, 128, 20), step=(105, 105, 20))
    img = decode(pictures.tile_layout_png(before, after, [(0, 1, 0.004, True), (3, 4, 0.002, True)],
                                          title="t"))
    for edge in (img[:3], img[-3:], img[:, :3], img[:, -3:]):
        assert edge.min() > 0.9, "something is drawn at the picture's edge"


def test_layout_links_are_coloured_by_residual():
    """One link at residual 0 and one large: both ends of viridis appear on top of what the
    (identical) colorbar contributes when every residual is 0."""
    before = grid_tiles(3, 1)  # centres (50,50), (140,50), (230,50)
    mixed = decode(pictures.tile_layout_png(before, before, [(0, 1, 0.0, True),
                                                              (1, 2, 25.0, True)]))
    low = decode(pictures.tile_layout_png(before, before, [(0, 1, 0.0, True),
                                                            (1, 2, 0.0, True)]))
    gained_yellow = count_near(mixed, VIRIDIS_HIGH) - count_near(low, VIRIDIS_HIGH)
    lost_purple = count_near(low, VIRIDIS_LOW) - count_near(mixed, VIRIDIS_LOW)
    assert gained_yellow > 30, gained_yellow
    assert lost_purple > 30, lost_purple
    assert count_near(mixed, VIRIDIS_LOW) > count_near(low, VIRIDIS_LOW) / 3  # residual 0 stays


def test_layout_dropped_links_are_dashed_red():
    before = grid_tiles(2, 1)  # one horizontal link at y = 50
    kept = decode(pictures.tile_layout_png(before, before, [(0, 1, 1.0, True)]))
    dropped = decode(pictures.tile_layout_png(before, before, [(0, 1, 1.0, False)]))
    assert red_mask(kept).sum() < 5
    red = red_mask(dropped)
    assert red.sum() > 30
    # the link is the image row with the most red pixels; dashed means many separate runs
    row = red[int(np.argmax(red.sum(axis=1)))].astype(int)
    runs = int((np.diff(row) == 1).sum())
    assert runs >= 5, runs


def test_layout_y_axis_points_down():
    """Tile 2 lies below tile 0 (larger y): its dropped (red) link to 0 goes down the image
    from the row of the purple link 0-1, never above it."""
    size = (100, 100, 20)
    tiles = [(0, (0, 0, 0), size), (1, (200, 0, 0), size), (2, (0, 200, 0), size)]
    img = decode(pictures.tile_layout_png(tiles, None, [(0, 1, 0.0, True), (0, 2, 5.0, False)]))
    purple_row = int(np.argmax(np.all(np.abs(img - VIRIDIS_LOW) < 0.06, axis=-1).sum(axis=1)))
    red_rows = np.nonzero(red_mask(img).any(axis=1))[0]
    assert red_rows.min() >= purple_row - 5
    assert np.median(red_rows) > purple_row + 30


def test_layout_stacked_z_rows_use_different_outline_colours():
    # the second z row is outlined in brown (#8c564b): red clearly above blue, not white
    brownish = lambda img: ((img[..., 0] - img[..., 2] > 0.1) & (img[..., 0] < 0.9)).sum()
    stacked = decode(pictures.tile_layout_png(grid_tiles(1, 1, 2), None, []))
    flat = decode(pictures.tile_layout_png(grid_tiles(2, 1, 1), None, []))
    assert brownish(stacked) > 100
    assert brownish(flat) < 5


def test_layout_survives_nan_and_empty_inputs():
    before = grid_tiles(2, 2)
    after = list(grid_tiles(2, 2, jitter=1.0))
    after[3] = (3, (np.nan, 0.0, 0.0), (100, 100, 20))  # unregistered tile
    links = [(0, 1, np.nan, True), (1, 3, 2.0, True), (2, 3, np.inf, False), (0, 9, 1.0, True)]
    decode(pictures.tile_layout_png(before, after, links))
    assert pictures.tile_layout_png([], None, []).startswith(PNG_SIGNATURE)
    assert pictures.tile_layout_png([], [], []).startswith(PNG_SIGNATURE)
    same = pictures.tile_layout_png(before, before, [])  # zero shifts: no arrows, no crash
    decode(same)


# --- projections_png -----------------------------------------------------------------------


def test_projection_bright_square_shows_bright():
    square = np.zeros((64, 64), np.uint16)
    square[16:48, 16:48] = 1000
    bright = decode(pictures.projections_png([("ch0", square, 1.0)]))
    empty = decode(pictures.projections_png([("ch0", np.zeros((64, 64)), 1.0)]))
    assert bright.shape == empty.shape
    white = np.all(bright > 0.98, axis=-1)
    # compare only the image area: the pixels that are black for the all-zero input
    area = np.all(empty < 0.02, axis=-1)
    assert area.sum() > 2000
    assert bright[area].mean() > empty[area].mean() + 0.15
    assert 0.15 < white[area].mean() < 0.35  # the square is a quarter of the image


def test_projection_contrast_ignores_zeros_and_hot_pixels():
    """Zeros stay black and one hot pixel does not turn a 1000..2000 ramp black."""
    a = np.zeros((50, 100))
    a[:, 50:] = np.linspace(1000, 2000, 50)
    a[0, 99] = 1e6
    img = decode(pictures.projections_png([("ramp", a, 1.0)]))
    area = np.all(decode(pictures.projections_png([("ramp", np.zeros_like(a), 1.0)])) < 0.02,
                  axis=-1)
    cols = np.nonzero(area.any(axis=0))[0]
    left, right = cols[3: len(cols) // 2 - 2], cols[len(cols) // 2 + 2: -3]  # not the frame
    grey = img.mean(axis=-1)
    inside = area[:, cols].all(axis=1)  # image rows
    assert grey[np.ix_(inside, left)].max() < 0.02
    ramp = grey[np.ix_(inside, right)].mean(axis=0)
    assert ramp[0] < 0.1 and ramp[-5:].mean() > 0.85
    assert np.all(np.diff(ramp) > -0.02)  # increasing left to right


@pytest.mark.parametrize("aspect", [1.0, 5.0])
def test_projection_aspect_is_pixel_size_ratio(aspect):
    a = np.zeros((20, 100))  # black everywhere, so the drawn image is the black region
    img = decode(pictures.projections_png([("xz", a, aspect)]))
    black = np.all(img < 0.05, axis=-1)
    rows = (black.sum(axis=1) > 0.5 * black.sum(axis=1).max()).sum()
    cols = (black.sum(axis=0) > 0.5 * black.sum(axis=0).max()).sum()
    assert rows / cols == pytest.approx(20 * aspect / 100, rel=0.1)


def test_projection_layout_row_then_grid():
    a = np.random.default_rng(1).random((40, 40))
    three = decode(pictures.projections_png([(f"c{i}", a, 1.0) for i in range(3)]))
    five = decode(pictures.projections_png([(f"c{i}", a, 1.0) for i in range(5)]))
    assert three.shape[1] > 2 * three.shape[0]  # one row
    assert five.shape[0] > 1.5 * three.shape[0]  # more than one row


@pytest.mark.parametrize("array", [
    np.full((30, 40), np.nan),
    np.where(np.eye(30) > 0, np.nan, 3.0),
    np.array([[np.inf, -np.inf], [1.0, 2.0]]),
    np.zeros((0, 0)),
    np.zeros((0, 7)),
    np.full((30, 40), 7),
    np.full((30, 40), -2.5),
])
def test_projection_odd_inputs_give_valid_png(array):
    data = pictures.projections_png([("odd", array, 1.0)], title="odd")
    assert data.startswith(PNG_SIGNATURE)


def test_projection_constant_non_zero_is_bright():
    img = decode(pictures.projections_png([("flat", np.full((60, 60), 7), 1.0)]))
    assert np.all(img > 0.98, axis=-1).mean() > 0.3


def test_projection_refuses_non_2d():
    with pytest.raises(ValueError, match="2-d"):
        pictures.projections_png([("vol", np.zeros((2, 3, 4)), 1.0)])


# --- progress_png ----------------------------------------------------------------------------


@pytest.mark.parametrize("times", [[], [3.5], [5.0, 1.0, 3.0, np.nan, 2.0]])
def test_progress_valid_for_empty_single_and_unsorted(times):
    img = decode(pictures.progress_png(times, total=4, title="p"))
    assert img.shape[1] > img.shape[0]


def test_progress_curve_reaches_total_line():
    """All blocks done: the curve's top is on the dashed total line; half done: well below."""
    def top_of_curve(img):  # highest image row holding the curve's blue (#1f5fa8)
        blue = np.all(np.abs(img - np.array([0x1F, 0x5F, 0xA8]) / 255) < 0.1, axis=-1)
        return int(np.nonzero(blue.any(axis=1))[0].min())

    def total_line_row(img):  # the row with the most dark grey (#444444) pixels
        grey = np.all(np.abs(img - 0x44 / 255) < 0.15, axis=-1)
        return int(np.argmax(grey.sum(axis=1)))

    done = decode(pictures.progress_png([4.0, 1.0, 2.0, 3.0], total=4))
    half = decode(pictures.progress_png([1.0, 2.0], total=4))
    assert abs(top_of_curve(done) - total_line_row(done)) <= 3
    assert top_of_curve(half) > total_line_row(half) + 50


def test_layout_of_thousands_of_tiles_is_quick():
    """Labels and arrows are left out when they cannot be read, which also keeps it fast."""
    before = grid_tiles(40, 40, 2)
    after = grid_tiles(40, 40, 2, jitter=3.0)
    links = [(i, i + 1, 1.0, True) for i in range(0, len(before) - 1, 2)]
    start = time.perf_counter()
    decode(pictures.tile_layout_png(before, after, links))
    assert time.perf_counter() - start < 10  # 14 s when every tile had a label


# --- general ---------------------------------------------------------------------------------


def test_deterministic_and_thread_safe():
    """Same inputs, same bytes, also when reports are drawn from many threads at once (a
    mathtext legend marker once broke this: glyph errors and differing pixels)."""
    before, after = grid_tiles(3, 2, 2), grid_tiles(3, 2, 2, jitter=2.0)
    a = np.random.default_rng(2).random((60, 80))
    draws = [lambda: pictures.tile_layout_png(before, after, [(0, 1, 1.0, True),
                                                              (1, 2, 9.0, False)], "x"),
             lambda: pictures.projections_png([("a", a, 1.0), ("b", a.T, 2.0)], "p"),
             lambda: pictures.progress_png([3.0, 1.0, 2.0], 5, "t")]
    first = [draw() for draw in draws]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: draws[k % 3](), range(12)))
    assert all(g == first[k % 3] for k, g in enumerate(got))


def test_user_text_is_not_mathtext():
    """Titles and labels come from job files and channel names: a "$" is just a character."""
    bad = r"cost $\frac$ and $"
    decode(pictures.projections_png([(bad, np.ones((10, 10)), 1.0)], title=bad))
    decode(pictures.tile_layout_png(grid_tiles(), None, [], title=bad))
    decode(pictures.progress_png([1.0], 2, title=bad))


def test_save_png_writes_the_bytes(tmp_path):
    data = pictures.progress_png([1.0], 2)
    target = tmp_path / "sub" / "progress.png"
    pictures.save_png(data, target)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["progress.png"]


def test_import_does_not_import_matplotlib():
    code = ("import sys, pipelines.report.pictures; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_layout_colour_scale_spans_the_kept_residuals():
    """Residuals of 0.1 and 0.2 voxels: the worse link is at the top of the scale (yellow),
    not a purple 0.2 on a fixed 0–2 scale that would hide which pair is worst."""
    before = grid_tiles(3, 1, 1)
    img = decode(pictures.tile_layout_png(before, before, [(0, 1, 0.1, True), (1, 2, 0.2, True)]))
    panels = img[:, : int(0.75 * img.shape[1])]   # not the colour bar at the right
    assert count_near(panels, VIRIDIS_HIGH) > 30


def test_layout_pairs_between_z_layers_do_not_cross_the_grid():
    """A pair between z layers is a marker where the tiles overlap, not a line across the
    layout: its red (dropped) pixels stay within a few tile-widths' hundredths."""
    before = grid_tiles(2, 2, 2)   # tiles 0-3 in layer 0, 4-7 in layer 1
    img = decode(pictures.tile_layout_png(before, before, [(0, 7, 5.0, False)]))
    red = np.nonzero(red_mask(img)[: int(0.85 * img.shape[0])])   # above the legend
    assert len(red[0]) > 5 and np.ptp(red[0]) < 25 and np.ptp(red[1]) < 25, (np.ptp(red[0]), np.ptp(red[1]))


def test_layout_shows_unmatched_pairs_in_grey():
    before = grid_tiles(2, 1, 1)
    without = decode(pictures.tile_layout_png(before, before, []))
    grey = decode(pictures.tile_layout_png(before, before, [], unmatched=[(0, 1)]))
    assert count_near(grey, (0.541, 0.541, 0.541), 0.04) > count_near(without, (0.541, 0.541, 0.541), 0.04) + 20


@pytest.mark.parametrize("width, length", [(40.0, 5.0), (573.6, 100.0), (1000.0, 200.0), (7.0, 1.0),
                                           (0.0, 0.0)])
def test_scale_bar_is_a_round_fifth_of_the_width(width, length):
    assert pictures.scale_bar_length(width) == length


def test_projection_in_micrometres_has_a_scale_bar():
    """With µm per pixel: a white bar over the (black) image, and axes; without: neither."""
    a = np.zeros((100, 100))
    plain = decode(pictures.projections_png([("c", a, 1.0)]))
    scaled = decode(pictures.projections_png([("c", a, 1.0, 0.4)]))   # 40 µm wide: a 5 µm bar
    assert white_inside_the_image(scaled) > 50 > white_inside_the_image(plain)


def white_inside_the_image(img: np.ndarray) -> int:
    """White pixels inside the bounding box of the black (all-zero) image area."""
    black = np.all(img < 0.05, axis=-1)   # rows and columns mostly black: not the text
    rows = np.nonzero(black.sum(axis=1) > 0.5 * black.sum(axis=1).max())[0]
    cols = np.nonzero(black.sum(axis=0) > 0.5 * black.sum(axis=0).max())[0]
    inside = img[rows.min() + 2: rows.max() - 1, cols.min() + 2: cols.max() - 1]
    return int(np.all(inside > 0.95, axis=-1).sum())
