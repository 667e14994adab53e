"""Shared pieces of the throughput benchmark: sizes, acquisitions, cases, the in-memory
volume, page-cache handling and the read-back check every tool's output must pass.

Every tool writes the same thing: level 0 of a uint16 volume (the placement acquisition's,
or the overlap acquisition's blended one), chunks 128³, as N5 or as sharded Zarr v3
(4 × 4 × 4 chunks per shard), compressed with zstd level 1 or blosc-lz4.
The codec objects and the array description come from this project's own planning code
(`pipelines.plan.make_plan`), so every tool is configured from the same `ArraySpec`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from pipelines.config import build_config
from pipelines.formats import ArraySpec
from pipelines.geometry import Box, ChunkGrid, grid_indices, to_zyx
from pipelines.testing.synthetic import make_acquisition
from pipelines.tiles import read_region, read_tile_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "bench"
OUT = DATA / "out"                     # every tool writes here, one subfolder per run
TILE = (512, 512, 128)                 # voxels per tile (the demo's tile), 64 MiB of uint16
CHUNKS = [128, 128, 128]
SHARD = [4, 4, 4]                      # chunks per shard for sharded Zarr v3
FORMATS = {"n5": {"format": "n5"},
           "zarr3-sharded": {"format": "zarr3", "shard": SHARD}}
CODECS = {"zstd-1": {"name": "zstd", "level": 1},
          "blosc-lz4": {"name": "blosc", "cname": "lz4"}}   # clevel 5, byte shuffle
ACQUISITIONS = {"placement": {"overlap": 0.0, "jitter": 0.0},
                "overlap": {"overlap": 0.1, "jitter": 0.0}}
MiB = 2**20
N5_BLOCK: list[int] | None = None      # output.block of the N5 jobs (None: the project's default)


@dataclass(frozen=True)
class Case:
    """One output format × codec."""

    fmt: str     # key of FORMATS
    codec: str   # key of CODECS

    @property
    def name(self) -> str:
        return f"{self.fmt} {self.codec}"


CASES = [Case(f, c) for f in FORMATS for c in CODECS]


def tile_grid(gib: float) -> tuple[int, int, int]:
    """Tiles per axis for about `gib` GiB of uint16 output: a power of two of tiles,
    doubled along x, y, z in turn (4 GiB → 4 × 4 × 4 tiles → 2048 × 2048 × 512 voxels)."""
    per_tile = math.prod(TILE) * 2 / 2**30
    count = 2 ** max(0, round(math.log2(max(gib, per_tile) / per_tile)))
    grid = [1, 1, 1]
    axis = 0
    while math.prod(grid) < count:
        grid[axis % 3] *= 2
        axis += 1
    return tuple(grid)


def acquisition(kind: str, grid: tuple[int, int, int], log=print) -> Path:
    """The synthetic acquisition `kind` (placement: no overlap; overlap: 10 %) under
    data/bench/, generated only when missing or made with other parameters."""
    folder = DATA / f"throughput-{'x'.join(map(str, grid))}-{kind}"
    params = dict(grid=list(grid), tile=list(TILE), seed=0, **ACQUISITIONS[kind])
    doc = folder / "acquisition.json"
    if doc.exists():
        found = json.loads(doc.read_text())
        if all(found.get(k) == v for k, v in params.items()) and (folder / "tiles.json").exists():
            return folder
    log(f"generating the {kind} acquisition {'x'.join(map(str, grid))} tiles of "
        f"{'x'.join(map(str, TILE))} under {folder} (once) ...")
    began = time.perf_counter()
    make_acquisition(folder, grid=grid, tile=TILE, overlap=params["overlap"],
                     jitter=params["jitter"], seed=0, truth=False)
    log(f"  done in {time.perf_counter() - began:.0f} s")
    return folder


def job(folder: Path, out: Path | str, case: Case, master: str, extra: dict | None = None):
    """The export job of `case` for the acquisition in `folder` (levels = 1: level 0 only)."""
    output = {"uri": str(out), "chunks": CHUNKS, "codec": CODECS[case.codec], "levels": 1,
              **FORMATS[case.fmt], **({"block": N5_BLOCK} if N5_BLOCK and case.fmt == "n5" else {})}
    raw = {"input": {"tiles": str(folder / "tiles.json")}, "output": output,
           "fusion": {"blending": "linear"},
           "spark": {"master": master, "ui.enabled": "false", "driver.memory": "2g"}}
    for section, values in (extra or {}).items():
        raw.setdefault(section, {}).update(values)
    return build_config(raw)


class SharedVolume:
    """A level-0 volume (z, y, x) in shared memory, built before any timing: what the limit
    and tensorstore write, from memory; limit workers attach to it by name instead of
    copying it. `placed` is the placement acquisition's output, `fused` any other's."""

    def __init__(self, shape_zyx, dtype):
        self.shape = tuple(int(n) for n in shape_zyx)
        self.dtype = np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.shm = shared_memory.SharedMemory(create=True, size=self.nbytes)
        self.array = np.ndarray(self.shape, self.dtype, buffer=self.shm.buf)
        self.array[...] = 0

    @classmethod
    def placed(cls, folder: Path) -> SharedVolume:
        """The placement acquisition's volume: non-overlapping tiles at whole-voxel
        positions, so the fused volume is the tiles side by side."""
        tiles = read_tile_json(str(folder / "tiles.json"))
        bounds = tiles.bounds
        volume = cls(to_zyx(bounds.shape), tiles.dtype)
        for tile in tiles:
            at = tile.box.relative_to(bounds.start).slices_zyx()
            volume.array[at] = read_region(tile, Box((0, 0, 0), tile.size))
        return volume

    @classmethod
    def fused(cls, shape_xyz, dtype, boxes, voxels) -> SharedVolume:
        """A volume of `shape_xyz` filled box by box with `voxels(box)` (z, y, x), e.g. the
        overlap acquisition's blended output (`ours.expected`), so the limit and
        tensorstore write the very values our export writes for it."""
        volume = cls(to_zyx(shape_xyz), dtype)
        for box in boxes:
            volume.array[box.slices_zyx()] = voxels(box)
        return volume

    def close(self) -> None:
        del self.array
        try:
            self.shm.close()
        except BufferError:  # a view is still alive somewhere; the unlink still frees it at exit
            pass
        self.shm.unlink()


def attach(name: str, shape, dtype) -> tuple[shared_memory.SharedMemory, np.ndarray]:
    """A worker's view of the shared volume."""
    shm = shared_memory.SharedMemory(name=name)
    return shm, np.ndarray(shape, np.dtype(dtype), buffer=shm.buf)


def settle() -> bool:
    """Before a timed run: flush dirty pages (so one tool's write-back does not land in the
    next tool's time) and drop the page cache. True if the cache could be dropped."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:  # not root, or a container without /proc/sys write access
        return False


def timed_sync() -> float:
    """Seconds `sync` takes after a run: the write-back the run left behind."""
    began = time.perf_counter()
    os.sync()
    return time.perf_counter() - began


def warm(paths) -> float:
    """Read files once (untimed) so inputs come from memory, as the other tools' do."""
    began, buffer = time.perf_counter(), bytearray(16 * MiB)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return time.perf_counter() - began


def tile_files(folder: Path) -> list[str]:
    return [t.path for t in read_tile_json(str(folder / "tiles.json"))]


def fresh(name: str) -> Path:
    """An empty output folder data/bench/out/<name>."""
    path = OUT / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def stored(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`, metadata included."""
    files = nbytes = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            files += 1
            nbytes += os.path.getsize(os.path.join(dirpath, name))
    return files, nbytes


def sample_boxes(spec: ArraySpec, count: int = 3, seed: int = 0) -> list[Box]:
    """Chunks to read back: the first, the last and random ones (x, y, z boxes)."""
    grid = ChunkGrid(spec.shape, spec.chunks)
    indices = list(grid_indices(grid.counts))
    rng = np.random.default_rng(seed)
    picks = [indices[0], indices[-1]] + [indices[i] for i in rng.choice(len(indices), count, replace=False)]
    return [grid.chunk_box(i) for i in picks]


def file_kv(path: Path) -> dict:
    """A tensorstore kvstore spec for a local folder."""
    return {"driver": "file", "path": str(path)}


def check(fmt: str, kvstore: dict, spec: ArraySpec, expected) -> int:
    """Read sample chunks of the array in `kvstore` with tensorstore (a fresh context, no
    cache) and compare with `expected(box)` (z, y, x). Returns the chunks checked; raises
    AssertionError naming the first chunk that differs."""
    import tensorstore as ts

    driver = "n5" if fmt == "n5" else "zarr3"
    array = ts.open({"driver": driver, "kvstore": kvstore}, context=ts.Context(), open=True).result()
    path = kvstore.get("path")
    boxes = sample_boxes(spec)
    for box in boxes:
        if fmt == "n5":   # tensorstore's N5 arrays are indexed x, y, z
            found = array[tuple(slice(a, b) for a, b in zip(box.start, box.stop))].read().result().T
        else:
            found = array[box.slices_zyx()].read().result()
        want = expected(box)
        if found.shape != want.shape or not np.array_equal(found, want):
            raise AssertionError(f"{path}: chunk at {box.start} differs from the expected volume")
    return len(boxes)


def expected_objects(spec: ArraySpec) -> int:
    """Objects a full volume without empty chunks has: chunks, or shards when sharded."""
    step = [c * s for c, s in zip(spec.chunks, spec.shard)] if spec.shard else spec.chunks
    return math.prod(ChunkGrid(spec.shape, tuple(step)).counts)


def count_objects(path: Path) -> int:
    """Data objects under `path`: files that are not metadata, hidden or temporary."""
    count = 0
    for _, _, names in os.walk(path):
        count += sum(1 for n in names if not n.endswith(".json") and not n.startswith("."))
    return count


def bench_session(master: str, name: str):
    """A quiet Spark session for a benchmark that drives executors itself (stitching,
    illumination): workers on this interpreter, loopback only, no progress bars."""
    from pyspark.sql import SparkSession
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master(master).appName(f"bench {name}")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark
