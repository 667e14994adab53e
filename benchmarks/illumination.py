"""Flatfield and intensity matching: accuracy against the phantom, and what they cost.

    python benchmarks/illumination.py [--out benchmarks/results/illumination.json]

Generates (once, under data/bench/illumination/) tiles of the phantom under a known 40 %
vignetting, a dark offset of 100 and per-tile gains in [0.6, 1.0] with Poisson noise, twice:
the phantom as it is (its background varies slowly across the volume) and with one
background level (data/bench/illumination-flat/; the same blobs and fibres), then
on Spark (--master, default local[*]): estimates the flatfield (time per tile), exports
without corrections, with the flatfield, and with both (the last includes measuring the
pairs, also timed on its own), and compares against the truth
(pipelines.testing.evenness): S against the known field up to a scale, the gains up to a
scale, the fused volume's relative RMS error after one global linear fit (4^3 block
means), and the seam contrast. Also the planar tilt of the estimated S against the true
field, beside the tilt of the sample's own content as the tiles' pixels see it (the mean
of the noise-free phantom over every tile, per pixel): overlaps cannot see a tilt of S (it
trades against a brightness ramp across the stage), so the histogram estimate inherits the
content's. Writes the figures as JSON and the before / after picture
(docs/illumination-before-after.png).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_session  # noqa: E402
from pipelines.config import build_config  # noqa: E402
from pipelines.testing.evenness import relative_error, seam_contrast  # noqa: E402
from pipelines.testing.synthetic import illumination, make_acquisition  # noqa: E402

ACQUISITION = dict(grid=(12, 12, 1), tile=(64, 64, 16), overlap=0.1, jitter=0, seed=3,
                   falloff=0.4, dark=100.0, gains=(0.6, 1.0), density=3.0)


def acquisition(folder: Path, waves: bool) -> dict:
    done = folder / "acquisition.json"
    if done.exists():
        doc = json.loads(done.read_text())
        if doc["grid"] == list(ACQUISITION["grid"]) and doc.get("background_waves", True) == waves:
            return doc
    return make_acquisition(folder, truth=True, waves=waves, **ACQUISITION)


def export_run(folder: Path, name: str, spark, **fusion) -> tuple[np.ndarray, dict]:
    import zarr

    from pipelines.driver import export
    from pipelines.spark import SparkExecutor
    raw = {"input": {"tiles": str(folder / "tiles.json")},
           "output": {"uri": str(folder / f"{name}.zarr"), "format": "zarr2", "chunks": [128, 128, 16]},
           "fusion": {"blending": "closest", **fusion}}
    began = time.perf_counter()
    result = export(build_config(raw, source=str(folder / "job.toml")), SparkExecutor(spark=spark),
                    stream=io.StringIO(), overwrite=True)
    seconds = time.perf_counter() - began
    volume = np.asarray(zarr.open_array(str(folder / f"{name}.zarr" / "0"), mode="r")[...])
    return volume, {"seconds": round(seconds, 2),
                    "MiB_per_s": round(result.volume_bytes / 2**20 / seconds, 1)}


def field_error(folder: Path) -> float:
    gain = tifffile.imread(folder / "tiles-flatfield" / "S.tif").astype(np.float64)
    truth = illumination(ACQUISITION["tile"][:2], ACQUISITION["falloff"]).astype(np.float64)
    scale = (gain * truth).sum() / (gain * gain).sum()
    return float(np.sqrt(np.mean((scale * gain - truth) ** 2) / np.mean(truth ** 2)))


def tilt(plane: np.ndarray) -> list[float]:
    """The planar slope of log(plane) (y, x), as a fraction per tile width along x and y."""
    ny, nx = plane.shape
    y, x = np.mgrid[0:ny, 0:nx]
    design = np.c_[np.ones(plane.size), x.ravel() / (nx - 1), y.ravel() / (ny - 1)]
    fit = np.linalg.lstsq(design, np.log(plane.astype(np.float64)).ravel(), rcond=None)[0]
    return [round(float(fit[1]), 4), round(float(fit[2]), 4)]


def tilts(folder: Path, truth: np.ndarray) -> dict:
    """Tilt of S / true field, and of the content every tile pixel sees (mean over tiles)."""
    gain = tifffile.imread(folder / "tiles-flatfield" / "S.tif")
    field = illumination(ACQUISITION["tile"][:2], ACQUISITION["falloff"])
    x, y = ACQUISITION["tile"][:2]
    seen = np.zeros((y, x))
    for t in json.loads((folder / "tiles-true.json").read_text()):
        px, py = (int(v) for v in t["position"][:2])
        seen += truth[:, py:py + y, px:px + x].mean(axis=0, dtype=np.float64)
    return {"S_tilt_x_y_per_tile": tilt(gain / field), "content_tilt_x_y_per_tile": tilt(seen)}


def gain_errors(folder: Path, acq: dict) -> tuple[float, float]:
    """Max and RMS relative error of the recovered brightness 1 / gain, up to one scale."""
    found = json.loads((folder / "tiles-intensity.json").read_text())["tiles"]
    recovered, truth = 1 / np.array([t["gain"] for t in found]), np.array(acq["gains"])
    scale = (recovered * truth).sum() / (recovered * recovered).sum()
    error = (scale * recovered - truth) / truth
    return float(np.abs(error).max()), float(np.sqrt(np.mean(error ** 2)))


def picture(volumes: list[tuple[str, np.ndarray]], path: Path) -> None:
    from pipelines.report.pictures import projections_png, save_png
    middle = volumes[0][1].shape[0] // 2
    save_png(projections_png([(name, v[middle].astype(np.float32), 1.0) for name, v in volumes],
                             "one z slice of the fused phantom: vignetting 40 %, dark 100, gains 0.6-1.0"),
             path)


def correction_cost(folder: Path) -> dict:
    """In-process read throughput of one 512 x 512 x 64 tile, plain and corrected (flatfield
    and a gain): what the correction adds to a fusing task's reads."""
    from pipelines.geometry import Box
    from pipelines.illumination.correct import Correction, read_corrected
    from pipelines.illumination.estimate import Fields
    from pipelines.illumination.fields import write_fields
    from pipelines.tiles import Tile, read_region
    size = (512, 512, 64)
    path = folder / "big-tile.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(100, 4000, size[::-1]).astype(np.uint16), contiguous=True)
    fields = Fields(np.ones(size[1::-1], np.float32), np.full(size[1::-1], 100.0, np.float32))
    write_fields(str(folder / "big-fields"), fields, {})
    tile = Tile(0, str(path), (0.0, 0.0, 0.0), size, (1.0, 1.0, 1.0), "GRAY16")
    correction = Correction((str(folder / "big-fields"),), (((0, 1.1, -2.0),),))
    whole, rates = Box((0, 0, 0), size), {}
    for name, read in (("plain", lambda: read_region(tile, whole).astype(np.float32)),
                       ("corrected", lambda: read_corrected(tile, whole, correction, 0))):
        read()   # warm: the page cache and the fields' cache
        began = time.perf_counter()
        for _ in range(3):
            read()
        rates[f"{name}_MiB_per_s"] = round(3 * path.stat().st_size / 2**20 / (time.perf_counter() - began))
    return rates


def run(spark, folder: Path, waves: bool = True) -> dict:
    from pipelines.corrections import estimate_flatfield, match_intensities
    from pipelines.illumination.plan import flatfield_folders
    from pipelines.spark import SparkExecutor
    acq = acquisition(folder, waves)
    config = build_config({"input": {"tiles": str(folder / "tiles.json")},
                           "output": {"uri": str(folder / "unused")}})
    estimated = estimate_flatfield(config, SparkExecutor(spark=spark), io.StringIO())
    truth = np.load(folder / "ground-truth.npy")
    positions = [tuple(int(v) for v in t["position"])
                 for t in json.loads((folder / "tiles-true.json").read_text())]
    plain, plain_run = export_run(folder, "plain", spark)
    _, flat_run = export_run(folder, "flatfield", spark, flatfield="auto")
    began = time.perf_counter()
    match_intensities(replace(config, flatfield=flatfield_folders(replace(config, flatfield=("auto",)))),
                      SparkExecutor(spark=spark), io.StringIO())
    matching = time.perf_counter() - began
    even, even_run = export_run(folder, "corrected", spark, flatfield="auto", intensity="match")
    if waves:
        picture([("uncorrected", plain), ("flatfield + intensity matching", even), ("truth", truth)],
                ROOT / "docs" / "illumination-before-after.png")
    worst, rms = gain_errors(folder, acq)
    tile = ACQUISITION["tile"]
    return {"acquisition": {**ACQUISITION, "background_waves": waves},
            "flatfield_seconds_per_tile": round(estimated.seconds / estimated.tiles, 4),
            "flatfield_S_relative_rms": round(field_error(folder), 4),
            **tilts(folder, truth),
            "gain_error_max": round(worst, 4), "gain_error_rms": round(rms, 4),
            "fused_error_uncorrected": round(relative_error(plain, truth), 4),
            "fused_error_corrected": round(relative_error(even, truth), 4),
            "seam_uncorrected": round(seam_contrast(plain, truth, positions, tile), 4),
            "seam_corrected": round(seam_contrast(even, truth, positions, tile), 4),
            "intensity_matching_seconds": round(matching, 2),
            "export_uncorrected": plain_run, "export_flatfield": flat_run,
            "export_flatfield_and_matching": even_run}


def demo_picture(tile_json: str, path: Path) -> None:
    """The demo's middle z slice fused without and with its corrections (the fields and
    coefficients `make demo` wrote beside `tile_json`, its stitched tile JSON)."""
    from pipelines.geometry import Box
    from pipelines.illumination.correct import tile_reader
    from pipelines.pixels.fusion import fuse
    from pipelines.plan import make_plan
    from pipelines.report.pictures import projections_png, save_png
    raw = {"input": {"tiles": tile_json}, "output": {"uri": str(path.parent / "unused")}}
    slices = []
    stem = Path(tile_json).stem.removesuffix("-final")   # fields are beside the stage JSON
    fields = str(Path(tile_json).with_name(f"{stem}-flatfield"))
    for name, fusion in (("uncorrected", {}), ("flatfield + intensity matching",
                                               {"flatfield": fields, "intensity": "match"})):
        plan = make_plan(build_config({**raw, "fusion": fusion}))
        x, y, z = plan.output.shapes[0]
        box = Box((0, 0, z // 2), (x, y, z // 2 + 1))
        tiles = [t for t in plan.tiles[0][0] if not t.box.relative_to(plan.offset).intersect(box).is_empty()]
        data = fuse(box, tiles, plan.offset, "linear", np.float32, read=tile_reader(plan.correction, 0))
        slices.append((name, data[0], 1.0))
    save_png(projections_png(slices, "make demo: the middle z slice"), path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "illumination.json"))
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--demo", metavar="TILE_JSON",
                        help="only draw the demo's slice without and with the corrections, from "
                             "make demo's stitched tile JSON, into --picture")
    parser.add_argument("--picture", default=str(ROOT / "data" / "illumination-demo.png"),
                        help="where --demo draws (default data/illumination-demo.png; the README's "
                             "is docs/illumination-demo.png, tracked by git)")
    args = parser.parse_args()
    if args.demo:
        # not the README's tracked picture unless asked: a user trying the README's command
        # found a modified working tree (trial AH)
        Path(args.picture).parent.mkdir(parents=True, exist_ok=True)
        demo_picture(args.demo, Path(args.picture))
        print(f"wrote {args.picture}")   # trial X: silent
        return 0
    spark = bench_session(args.master, "illumination")
    bench = ROOT / "data" / "bench"
    try:
        result = {"background_waves": run(spark, bench / "illumination"),
                  "flat_background": run(spark, bench / "illumination-flat", waves=False),
                  "tile_read_512x512x64": correction_cost(bench / "illumination")}
    finally:
        spark.stop()
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "master": args.master}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    for name in ("background_waves", "flat_background"):
        r = result[name]
        drop = r["fused_error_uncorrected"] / r["fused_error_corrected"]
        print(f"{name}: S {r['flatfield_S_relative_rms']:.1%} (goal <= 5 %), gains max "
              f"{r['gain_error_max']:.1%} (goal <= 5 %), fused error {drop:.1f} x lower "
              f"(goal >= 4 x), seams {r['seam_corrected']:.2%} (goal < 2 %); S tilt "
              f"{r['S_tilt_x_y_per_tile']} per tile width, content tilt {r['content_tilt_x_y_per_tile']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
