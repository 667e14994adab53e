"""Synthetic tile acquisitions: a seeded phantom cut into overlapping, jittered, noisy tiles.

The phantom is bright gaussian blobs and thin curved fibres on a smooth background. Every
object is a gaussian cut off (exactly 0) beyond REACH sigma, evaluated in world voxel
coordinates and added in one fixed order, so a voxel has the same value in whatever box it
is rendered: tiles without noise and falloff equal the ground-truth crop exactly.

    python -m pipelines.testing.synthetic OUTDIR [--grid 3x3x2] [--tile 512x512x128] ...
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from pipelines.geometry import Box, grid_indices, to_zyx, triple
from pipelines.tiles.model import TILE_TYPES, Tile
from pipelines.tiles.tilejson import write_tile_json

SLAB_VOXELS = 1 << 24     # voxels rendered at once (bounds memory to a few hundred MiB)
BLOBS_PER_VOXEL = 300e-8  # a few hundred blobs per 1e8 voxels
FIBRES_PER_VOXEL = 8e-8   # a few dozen fibres in the demo volume
REACH = 3.5               # gaussians are cut off at this many sigma
BACKGROUND = 200.0        # mean background level


@dataclass(frozen=True)
class _Scene:
    """The phantom's objects: background waves and gaussian windows, in drawing order."""

    waves: tuple            # per axis x, y, z: (amplitude, radians per voxel, phase)
    start: np.ndarray       # (n, 3) x, y, z: first voxel of each object's window
    stop: np.ndarray        # (n, 3) x, y, z: one past its last voxel
    profiles: tuple         # per object (z*amplitude, y, x) float32 profiles over its window


def phantom(box: Box, seed: int, volume_shape: Sequence[int], density: float = 1.0,
            waves: bool = True) -> np.ndarray:
    """Expected intensity (float32, z, y, x) of the phantom over `box` (world voxels, x, y, z).

    The scene depends only on `seed`, `volume_shape` (x, y, z), `density` (a factor on
    the number of blobs and fibres) and `waves` (False: the background is one level instead
    of varying slowly across the volume; the blobs and fibres stay the same); a voxel's
    value does not depend on the box it is rendered in. `box` may extend beyond the volume.
    """
    scene = _scene(int(seed), tuple(int(v) for v in volume_shape), float(density), bool(waves))
    out = _background(box, scene)
    hit = np.all((scene.start < box.stop) & (scene.stop > box.start), axis=1)
    for n in np.flatnonzero(hit):
        first = scene.start[n]
        lo, hi = np.maximum(first, box.start), np.minimum(scene.stop[n], box.stop)
        sz, sy, sx = Box(tuple(lo - first), tuple(hi - first)).slices_zyx()
        pz, py, px = scene.profiles[n]
        out[Box(tuple(lo), tuple(hi)).relative_to(box.start).slices_zyx()] += (
            pz[sz][:, None, None] * py[sy][:, None] * px[sx])
    return out


def illumination(size_xy: Sequence[int], falloff: float) -> np.ndarray:
    """Per-pixel illumination (float32, y, x) of a tile: 1 at the centre, 1-falloff at corners."""
    u, v = (np.linspace(0.0, 1.0, n) if n > 1 else np.full(1, 0.5) for n in size_xy[:2])
    return (1.0 - falloff * ((2 * v[:, None] - 1) ** 2 + (2 * u - 1) ** 2) / 2).astype(np.float32)


def to_type(values: np.ndarray, tile_type: str) -> np.ndarray:
    """Intensities (phantom units) as pixels of `tile_type`; shared by tiles and ground truth."""
    if tile_type == "GRAY8":
        return np.clip(np.rint(values / 16), 0, 255).astype(np.uint8)
    if tile_type == "GRAY16":
        if values.dtype.kind == "f":
            values = np.rint(values)
        return np.clip(values, 0, 65535).astype(np.uint16)
    return np.asarray(values, dtype=np.float32)


def make_acquisition(outdir, grid=(3, 3, 2), tile=(512, 512, 128), overlap=0.1, jitter=8.0,
                     seed=0, falloff=0.3, noise=True, tile_type="GRAY16",
                     resolution=(0.4, 0.4, 2.0), truth=True,
                     log: Callable[[str], None] | None = None, density: float = 1.0,
                     dark: float = 0.0, gains: tuple[float, float] | None = None,
                     waves: bool = True) -> dict:
    """Write a synthetic acquisition into `outdir`; per-axis arguments are x, y, z.

    Writes tiles/tile-NNNN.tif, tiles.json (stage = true position + jitter), tiles-true.json,
    ground-truth.npy (unless `truth` is false) and acquisition.json. `density` multiplies
    the number of blobs and fibres (small test volumes need more to have structure in
    every overlap); `waves` False makes the background one level (see `phantom`). Uneven
    illumination: each tile is multiplied by `illumination(falloff)` and by a gain drawn
    uniformly from `gains` (lo, hi), then photon noise, then the camera's `dark` offset is
    added (acquisition.json lists the gains). Returns the
    acquisition.json content plus "paths" (the files written) and "bytes" (their total size).
    Raises ValueError for bad parameters.
    """
    grid, tile = tuple(int(g) for g in grid), tuple(int(t) for t in tile)
    resolution = tuple(float(r) for r in resolution)
    _check(grid, tile, overlap, jitter, seed, falloff, tile_type, resolution)
    if not 0 < density < math.inf:
        raise ValueError(f"density must be a positive number, found {density}")
    log = log or (lambda line: None)
    out = Path(outdir).resolve()
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    true, stage = _positions(grid, tile, overlap, jitter, seed)
    volume = Box((0, 0, 0), (0, 0, 0))
    for p in true:
        volume = volume.union(Box.from_shape(p, tile))
    shape = volume.shape
    files = [out / "tiles" / f"tile-{n:04d}.tif" for n in range(len(true))]
    tile_gains = _gains(len(true), gains, seed)
    for n, (path, p) in enumerate(zip(files, true)):
        _write_tile(path, Box.from_shape(p, tile), n, seed, shape, falloff, noise, tile_type,
                    (density, waves), (tile_gains[n], dark))
    log(f"wrote {len(files)} tiles {_fmt(tile)} {tile_type} to {out / 'tiles'}")
    paths = {"tiles": str(out / "tiles"), "tiles_json": str(out / "tiles.json"),
             "tiles_true_json": str(out / "tiles-true.json")}
    for key, positions in (("tiles_json", stage), ("tiles_true_json", true)):
        write_tile_json([Tile(n, str(f), triple(float(v) for v in p), tile, resolution, tile_type)
                         for n, (f, p) in enumerate(zip(files, positions))], paths[key])
    log(f"wrote {paths['tiles_json']} (stage positions, jitter {jitter}) and "
        f"{paths['tiles_true_json']} (true positions)")
    written = files + [out / "tiles.json", out / "tiles-true.json"]
    if truth:
        paths["ground_truth"] = str(out / "ground-truth.npy")
        _write_truth(out / "ground-truth.npy", volume, seed, tile_type, (density, waves))
        log(f"wrote ground truth {_fmt(shape)} to {paths['ground_truth']}")
        written.append(out / "ground-truth.npy")
    else:
        (out / "ground-truth.npy").unlink(missing_ok=True)  # never leave a stale truth behind
    doc = {"grid": list(grid), "tile": list(tile), "overlap": overlap, "jitter": jitter,
           "seed": int(seed), "falloff": falloff, "noise": bool(noise), "type": tile_type,
           "resolution": list(resolution), "density": density, "ground_truth_shape": list(shape),
           "dark": dark, "gains": tile_gains, "background_waves": bool(waves)}
    paths["acquisition_json"] = str(out / "acquisition.json")
    (out / "acquisition.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {paths['acquisition_json']}")
    written.append(out / "acquisition.json")
    return {**doc, "paths": paths, "bytes": sum(f.stat().st_size for f in written)}


def _check(grid, tile, overlap, jitter, seed, falloff, tile_type, resolution) -> None:
    problems = [
        (len(grid) != 3 or min(grid) < 1, f"grid must be three positive integers, found {grid}"),
        (len(tile) != 3 or min(tile) < 1, f"tile must be three positive integers, found {tile}"),
        (len(resolution) != 3 or not all(0 < r < math.inf for r in resolution),
         f"resolution must be three positive numbers, found {resolution}"),
        (not 0 <= overlap < 0.9, f"overlap must be in [0, 0.9), found {overlap}"),
        (not 0 <= jitter < math.inf, f"jitter must be a non-negative number, found {jitter}"),
        (not 0 <= falloff <= 1, f"falloff must be in [0, 1], found {falloff}"),
        (not isinstance(seed, (int, np.integer)) or seed < 0, f"seed must be a non-negative integer, found {seed}"),
        (tile_type not in TILE_TYPES, f"type must be one of {', '.join(TILE_TYPES)}, found {tile_type}"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(message)


def _positions(grid, tile, overlap, jitter, seed) -> tuple[list, list]:
    """True (integer) and stage (true + jitter, 2 decimals) positions, x-fastest tile order.

    No jitter along an axis where a tile is one voxel thick: a 2D acquisition (`x,y,1`
    tiles) stays in one plane, so its tiles overlap. (Three values are still drawn per
    tile, so 3D acquisitions of a seed are unchanged.)"""
    step = [max(1, round(t * (1 - overlap))) for t in tile]
    true = [tuple(i * s for i, s in zip(idx, step)) for idx in grid_indices(grid)]
    low = [min(p[a] for p in true) for a in range(3)]
    true = [tuple(v - m for v, m in zip(p, low)) for p in true]
    rng, bound = np.random.default_rng([seed, 0]), math.floor(jitter * 100) / 100
    flat = [0.0 if t == 1 else 1.0 for t in tile]
    stage = [tuple(round(v + f * float(np.clip(round(d, 2), -bound, bound)), 2)
                   for v, d, f in zip(p, rng.uniform(-jitter, jitter, 3), flat)) for p in true]
    return true, stage


def _gains(count: int, gains: tuple[float, float] | None, seed: int) -> list[float]:
    """Per tile brightness (bleaching, laser drift): uniform in `gains`, else all 1."""
    if gains is None:
        return [1.0] * count
    lo, hi = gains
    if not 0 < lo <= hi < math.inf:
        raise ValueError(f"gains must be 0 < lo <= hi, found {lo}, {hi}")
    return [round(float(g), 4) for g in np.random.default_rng([seed, 2]).uniform(lo, hi, count)]


def _write_tile(path, box, index, seed, shape, falloff, noise, tile_type, scene=(1.0, True),
                gain_dark=(1.0, 0.0)) -> None:
    """Render one tile (true box) slab by slab, with falloff, gain, noise and dark offset."""
    pixels = np.empty(to_zyx(box.shape), TILE_TYPES[tile_type])
    light = illumination(box.shape, falloff) * np.float32(gain_dark[0])
    rng = np.random.default_rng([seed, 1, index])
    for slab in _slabs(box):
        values: np.ndarray = phantom(slab, seed, shape, *scene) * light
        if noise:
            values = rng.poisson(np.maximum(values, 0))
        values = values + gain_dark[1] if gain_dark[1] else values
        pixels[slab.relative_to(box.start).slices_zyx()] = to_type(values, tile_type)
    tifffile.imwrite(path, pixels, contiguous=True, photometric="minisblack")


def _write_truth(path, volume, seed, tile_type, scene=(1.0, True)) -> None:
    """Write the noise-free phantom over `volume` as .npy, slab by slab through a memmap."""
    shape = volume.shape
    array = np.lib.format.open_memmap(path, mode="w+", dtype=TILE_TYPES[tile_type],
                                      shape=to_zyx(shape))
    for slab in _slabs(volume):
        array[slab.relative_to(volume.start).slices_zyx()] = to_type(phantom(slab, seed, shape, *scene), tile_type)
    array.flush()
    del array


def _slabs(box: Box) -> Iterator[Box]:
    """Consecutive z-slabs of `box` of at most SLAB_VOXELS voxels (at least one slice)."""
    x, y, z = box.shape
    depth = max(1, SLAB_VOXELS // max(1, x * y))
    for z0 in range(box.start[2], box.stop[2], depth):
        yield Box((box.start[0], box.start[1], z0), (box.stop[0], box.stop[1], min(z0 + depth, box.stop[2])))


@functools.lru_cache(maxsize=8)
def _scene(seed: int, shape: tuple[int, int, int], density: float = 1.0, waves: bool = True) -> _Scene:
    """Draw the background waves, blobs and fibres from default_rng(seed), in a fixed order
    (the waves are drawn even when `waves` is False, so the blobs and fibres are the same)."""
    rng, extent = np.random.default_rng(seed), np.array(shape, dtype=float)
    drawn = tuple((rng.uniform(15, 35), 2 * math.pi * rng.uniform(0.5, 2.0) / n, rng.uniform(0, 2 * math.pi))
                  for n in shape)
    drawn = drawn if waves else tuple((0.0, w, p) for _, w, p in drawn)
    voxels = float(np.prod(extent))
    count = max(8, round(BLOBS_PER_VOXEL * density * voxels))
    centres = [rng.uniform(0, extent, (count, 3))]
    sigmas, amps = [rng.uniform(2, 6, count)], [rng.uniform(500, 3000, count)]
    for _ in range(max(2, round(FIBRES_PER_VOXEL * density * voxels))):
        for group, values in zip((centres, sigmas, amps), _fibre(rng, extent)):
            group.append(values)
    return _windows(drawn, np.concatenate(centres), np.concatenate(sigmas), np.concatenate(amps))


def _fibre(rng: np.random.Generator, extent: np.ndarray) -> tuple:
    """Centres, sigmas and amplitudes of gaussians one voxel apart along a smooth random path."""
    length = 2 + int(rng.uniform(0.2, 0.6) * max(extent[:2]))
    sigma, peak = rng.uniform(1.0, 2.0), rng.uniform(300, 1500)
    azimuth = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.05, length))
    elevation = np.clip(rng.uniform(-0.3, 0.3) + np.cumsum(rng.normal(0, 0.02, length)), -0.6, 0.6)
    steps = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                      np.sin(elevation)], axis=1)
    centres = rng.uniform(0, extent) + np.cumsum(steps, axis=0)
    amp = peak / (math.sqrt(2 * math.pi) * sigma)  # gaussians one voxel apart sum to ~peak
    return centres, np.full(length, sigma), np.full(length, amp)


def _windows(waves, centres, sigmas, amps) -> _Scene:
    """Each object's integer window and its separable, precomputed 1D gaussian profiles."""
    reach = np.ceil(REACH * sigmas).astype(np.int64)[:, None]
    start = np.floor(centres).astype(np.int64) - reach
    stop = start + 2 * reach + 1
    profiles = []
    for c, s, a, lo, hi in zip(centres, sigmas, amps, start, stop):
        px, py, pz = (np.exp(-0.5 * ((np.arange(low, h) - ci) / s) ** 2) for ci, low, h in zip(c, lo, hi))
        profiles.append(((a * pz).astype(np.float32), py.astype(np.float32), px.astype(np.float32)))
    return _Scene(waves, start, stop, tuple(profiles))


def _background(box: Box, scene: _Scene) -> np.ndarray:
    """Smooth separable background (a sum of one cosine per axis) over `box`, float32 z, y, x."""
    bx, by, bz = (np.array([a * math.cos(w * t + p) for t in range(lo, hi)], dtype=np.float32)
                  for (a, w, p), lo, hi in zip(scene.waves, box.start, box.stop))
    return ((bz + np.float32(BACKGROUND))[:, None, None] + by[:, None]) + bx


def _fmt(values: Sequence) -> str:
    return "x".join(str(v) for v in values)


def _triple(kind: type) -> Callable[[str], tuple]:
    """An argparse type for 'AxBxC' with three positive, finite numbers of `kind` (x, y, z)."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.lower().split("x"))
        except ValueError:
            values = ()
        if len(values) != 3 or not all(0 < v < math.inf for v in values):
            raise argparse.ArgumentTypeError(
                f"expected AxBxC with three positive {kind.__name__}s (x, y, z), found {text!r}")
        return values
    return parse


def _pair(text: str) -> tuple[float, float]:
    """An argparse type for 'LO,HI' (two numbers)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), found {text!r}") from None
    return lo, hi


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """Report a usage error as one line on stderr and exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for flags and options without one."""
    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: parse arguments, write the acquisition, print a summary."""
    parser = _Parser(prog="python -m pipelines.testing.synthetic", description=__doc__.split("\n")[0],
                     formatter_class=_Help)
    parser.add_argument("outdir", help="folder to write tiles/, tiles.json and the rest into")
    # string defaults go through `type` as typed ones would, and --help shows them as typed
    parser.add_argument("--grid", type=_triple(int), default="3x3x2", help="tiles per axis, XxYxZ")
    parser.add_argument("--tile", type=_triple(int), default="512x512x128", help="tile voxels, XxYxZ")
    parser.add_argument("--overlap", type=float, default=0.1, help="fraction in [0, 0.9)")
    parser.add_argument("--jitter", type=float, default=8.0, help="max stage error per axis, voxels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantom, noise, jitter and gains")
    parser.add_argument("--falloff", type=float, default=0.3, help="illumination loss at corners")
    parser.add_argument("--no-noise", dest="noise", action="store_false",
                        help="no Poisson noise")
    parser.add_argument("--type", default="GRAY16", choices=list(TILE_TYPES), help="pixel type of the tiles")
    parser.add_argument("--resolution", type=_triple(float), default="0.4x0.4x2.0",
                        help="the tile JSON's pixelResolution (e.g. µm per voxel), XxYxZ")
    # ground-truth.npy is as large as the fused volume (1 GB for the demo) and only
    # accuracy checks read it: written when asked; --no-truth, the old opt-out, still parses
    parser.add_argument("--truth", dest="truth", action="store_true", default=False,
                        help="also write ground-truth.npy, the noise-free phantom (z, y, x)")
    parser.add_argument("--no-truth", dest="truth", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--density", type=float, default=1.0,
                        help="factor on the number of blobs and fibres")
    parser.add_argument("--dark", type=float, default=0.0, help="camera offset added to every pixel")
    parser.add_argument("--gains", type=_pair, default=None,
                        help="LO,HI: per-tile gains drawn uniformly in [LO, HI] (e.g. 0.6,1.0); "
                             "default: none")
    parser.add_argument("--flat-background", dest="waves", action="store_false",
                        help="one background level instead of slow waves across the volume")
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        result = make_acquisition(args.outdir, args.grid, args.tile, args.overlap, args.jitter,
                                  args.seed, args.falloff, args.noise, args.type,
                                  args.resolution, args.truth, log=print, density=args.density,
                                  dark=args.dark, gains=args.gains, waves=args.waves)
    except ValueError as e:
        parser.error(str(e))
    print(f"done: {result['bytes'] / 2**20:.1f} MiB in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
