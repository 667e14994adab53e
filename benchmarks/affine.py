"""Affine fusion throughput: rotated views with linear interpolation, beside placement
(the same views translated side by side), and the same fusion by multiview-stitcher.

    python benchmarks/affine.py [--size 384x384x192]

The acquisition (generated once under data/bench/affine/): two views of `--size` uint16
pixels (a smooth pattern plus noise, so codecs see microscope-like data), written as TIFF
with BigStitcher XMLs:
- `rotated.xml`: angle 0 and angle 1 rotated 30° about y through the sample's centre,
  shifted so they overlap by most of their volume (multi-angle light-sheet);
- `placed.xml`: the same two views side by side along x (pure translations).

Ours: `pipelines.driver.export` on Spark `local[2]` (session started beforehand), N5,
zstd level 1, chunks 128 × 128 × 64, linear blending; placement with the default
`nearest` interpolation, rotated views with `linear`. The time is the export's run time
(planning, tasks, commit), MiB/s of uncompressed output.

multiview-stitcher (PyPI): the same two views as in-memory arrays with the same affines,
`fusion.fuse` (weighted average with its default blending, interpolation order 1, the
same output grid spacing 1 and chunks), computed with dask's threaded scheduler on 2
workers into memory: it does not encode or write anything, so the ratio favours it.
Results go to benchmarks/results/affine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "data" / "bench" / "affine"
RESULTS = ROOT / "benchmarks" / "results" / "affine.json"
ANGLE = 30.0


def rotation_y(degrees: float, centre) -> np.ndarray:
    a = np.deg2rad(degrees)
    rotate = np.array([[np.cos(a), 0, np.sin(a), 0], [0, 1, 0, 0], [-np.sin(a), 0, np.cos(a), 0], [0, 0, 0, 1]])
    shift, back = np.eye(4), np.eye(4)
    shift[:3, 3], back[:3, 3] = centre, -np.asarray(centre)
    return shift @ rotate @ back


def views_affines(size, rotated: bool) -> list[np.ndarray]:
    first = np.eye(4)
    second = np.eye(4)
    if rotated:
        second = rotation_y(ANGLE, [s / 2 for s in size])
    else:
        second[0, 3] = size[0]
    return [first, second]


def pixels(size, seed: int) -> np.ndarray:
    """A smooth pattern plus Poisson-like noise, z, y, x uint16."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    coarse = rng.uniform(200, 3000, (nz // 16 + 2, ny // 16 + 2, nx // 16 + 2)).astype(np.float32)
    from scipy import ndimage
    smooth = ndimage.zoom(coarse, 16, order=1)[:nz, :ny, :nx]
    return (smooth + rng.normal(0, 30, smooth.shape)).clip(0, 65535).astype(np.uint16)


def write_xml(path: Path, size, affines) -> None:
    from tests.bigstitcher_project import write_filemap_xml
    write_filemap_xml(path, [{"setup": n, "size": size, "file": f"view-{n}.tif",
                              "attributes": {"angle": n}, "chain": [("view", affine)]}
                             for n, affine in enumerate(affines)])


def prepare(size) -> list[np.ndarray]:
    import tifffile
    DATA.mkdir(parents=True, exist_ok=True)
    stacks = []
    for n in range(2):
        file = DATA / f"view-{n}.tif"
        stack = None
        if file.exists():
            stack = tifffile.imread(file)
        if stack is None or stack.shape != tuple(reversed(size)):
            stack = pixels(size, n)
            tifffile.imwrite(file, stack)
        stacks.append(stack)
    write_xml(DATA / "rotated.xml", size, views_affines(size, True))
    write_xml(DATA / "placed.xml", size, views_affines(size, False))
    return stacks


def ours(xml: Path, interpolation: str, spark) -> dict:
    from pipelines.config import build_config
    from pipelines.driver import export
    from pipelines.spark import SparkExecutor
    out = DATA / f"out-{xml.stem}"
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(Path(str(out) + ".job"), ignore_errors=True)
    for suffix in (".job.json", ".job.lock"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    shutil.rmtree(Path(str(out) + ".report"), ignore_errors=True)
    config = build_config({"input": {"tiles": str(xml)},
                           "output": {"uri": str(out), "format": "n5", "chunks": [128, 128, 64],
                                      "codec": {"name": "zstd", "level": 1}},
                           "fusion": {"blending": "linear", "interpolation": interpolation},
                           "spark": {"master": "local[2]"}})
    from benchmarks.ours import warm_workers
    warm_workers(spark)
    with open(os.devnull, "w") as quiet:
        result = export(config, executor=SparkExecutor(spark=spark), stream=quiet)
    mib = result.volume_bytes / 2**20
    return {"seconds": result.run_seconds, "volume_MiB": mib, "MiB_per_s": mib / result.run_seconds,
            "shape": list(result.summary.shape), "stored_MiB": result.summary.bytes_written / 2**20}


def multiview_stitcher(stacks, size) -> dict:
    import dask
    from multiview_stitcher import fusion, param_utils
    from multiview_stitcher import spatial_image_utils as si_utils
    images = []
    for stack, affine in zip(stacks, views_affines(size, True)):
        sim = si_utils.get_sim_from_array(stack, dims=["z", "y", "x"], scale={"z": 1, "y": 1, "x": 1},
                                          translation={"z": 0, "y": 0, "x": 0}, transform_key="world")
        # multiview-stitcher's affines act on (z, y, x, 1): reverse our x, y, z order
        zyx = np.eye(4)
        zyx[:3, :3] = affine[:3, :3][::-1, ::-1]
        zyx[:3, 3] = affine[:3, 3][::-1]
        si_utils.set_sim_affine(sim, param_utils.affine_to_xaffine(zyx), transform_key="world")
        images.append(sim)
    began = time.perf_counter()
    fused = fusion.fuse(images, transform_key="world", output_spacing={"z": 1, "y": 1, "x": 1},
                        output_chunksize={"z": 64, "y": 128, "x": 128}, interpolation_order=1)
    with dask.config.set(scheduler="threads", num_workers=2):
        data = np.asarray(fused.data.compute())
    seconds = time.perf_counter() - began
    mib = data.size * 2 / 2**20
    return {"seconds": seconds, "volume_MiB": mib, "MiB_per_s": mib / seconds, "shape": list(data.shape)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x384x192", help="view size x×y×z (default 384x384x192)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    stacks = prepare(size)
    from pipelines.config import build_config
    from pipelines.spark import session
    spark = session(build_config({"input": {"tiles": str(DATA / "placed.xml")},
                                  "output": {"uri": str(DATA / "unused")}, "spark": {"master": "local[2]"}}))
    spark.sparkContext.setLogLevel("ERROR")
    results = {"size": list(size), "angle": ANGLE}
    results["placement"] = ours(DATA / "placed.xml", "nearest", spark)
    results["affine"] = ours(DATA / "rotated.xml", "linear", spark)
    spark.stop()
    results["multiview_stitcher"] = multiview_stitcher(stacks, size)
    results["affine_over_placement"] = results["affine"]["MiB_per_s"] / results["placement"]["MiB_per_s"]
    results["affine_over_multiview_stitcher"] = (results["affine"]["MiB_per_s"] /
                                                 results["multiview_stitcher"]["MiB_per_s"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for key in ("placement", "affine", "multiview_stitcher"):
        r = results[key]
        print(f"{key:20s} {r['MiB_per_s']:8.1f} MiB/s  ({r['volume_MiB']:.0f} MiB in {r['seconds']:.1f} s, shape {r['shape']})")
    print(f"affine / placement: {results['affine_over_placement']:.2f} (goal ≥ 0.3); "
          f"affine / multiview-stitcher: {results['affine_over_multiview_stitcher']:.2f} (goal ≥ 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
