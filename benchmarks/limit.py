"""The codec + disk limit: N processes that only encode and write the volume's objects.

Each worker attaches to the shared in-memory volume, waits at a barrier, then takes block
after block from a shared counter (the same blocks, hence the same objects, as a Spark
task of our export), encodes the block's chunks or shards with this project's own format
code (`pipelines.formats.objects.encode_region`: same numcodecs compressor objects, same
byte order and shard index) and puts each object with `LocalStore.put` (temporary file +
rename). No fusion, no Spark, no receipts, no metadata: what remains is the work no
writer of these bytes can avoid. The clock starts when the barrier opens and stops when
the last worker has written its last object.

Settings (benchmarks/PROFILE.md, "The limit"): each worker keeps freed memory for reuse
(`pipelines.execute.tuning.keep_freed_memory`, as executors do; without it every chunk's
compressor output lands on freshly faulted pages) and may run `threads` threads, each
taking blocks from the counter, so one block's encoding overlaps another's put (the
codecs, numpy's copies and file writes release the GIL). Before the clock starts each
worker maps the whole shared volume and encodes one block untimed (`_warm_up`), so the
clock counts what tensorstore's timed write counts: the volume already in the writer's
memory, its code loaded.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import threading
import time
from dataclasses import dataclass

from pipelines.formats import format_module
from pipelines.formats.objects import encode_region
from pipelines.geometry import Box
from pipelines.storage import LocalStore


@dataclass(frozen=True)
class Work:
    """What a limit worker needs: plain values that pickle (spawned processes)."""

    shm_name: str
    shape: tuple[int, int, int]   # z, y, x
    dtype: str
    fmt: str                      # pipelines format name: n5 | zarr3
    spec: object                  # ArraySpec of level 0
    boxes: tuple[Box, ...]        # the blocks, in the order our export schedules them
    out: str                      # folder of the store
    threads: int = 1              # threads per worker process
    keep_freed_memory: bool = True


def run(work: Work, workers: int) -> dict:
    """Encode and write every block with `workers` processes; seconds, objects and bytes."""
    ctx = mp.get_context("spawn")  # a clean interpreter: no JVM or py4j threads inherited
    counter, barrier, results = ctx.Value("i", 0), ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(work, counter, barrier, results), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)        # every worker has imported and attached
    began = time.monotonic()         # CLOCK_MONOTONIC: comparable across processes
    done = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    errors = [d["error"] for d in done if d.get("error")]
    if errors:
        raise RuntimeError(f"limit worker failed: {errors[0]}")
    return {"seconds": max(d["end"] for d in done) - began, "workers": workers,
            "objects": sum(d["objects"] for d in done), "stored_bytes": sum(d["bytes"] for d in done),
            "worker_seconds": [round(d["end"] - d["start"], 3) for d in done],
            # CPU seconds of the workers (user, system, minor page faults), summed: what
            # the work costs, which load on a shared machine distorts far less than time
            "worker_cpu": [round(sum(d["cpu"][i] for d in done), 3) for i in range(2)]
            + [int(sum(d["cpu"][2] for d in done))]}


def _cpu() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _warm_up(fmt, work: Work, volume) -> None:
    """Before the clock starts, what tensorstore, writing from its own process's memory,
    never pays inside its timed write: map every page of the shared volume into this
    process (one read per page; ≈ 64 minor faults per chunk otherwise) and load the
    compiled copy loops (`pipelines.pixels.copying`, ≈ 1 s of a worker's first large copy)."""
    flat = volume.reshape(-1)
    int(flat[:: max(1, 4096 // volume.itemsize)].sum())   # one value per 4 KiB page
    box = work.boxes[0]
    for _ in encode_region(fmt, work.spec, volume[box.slices_zyx()], box):
        pass


def _worker(work: Work, counter, barrier, results) -> None:
    from benchmarks.common import attach
    from pipelines.execute.tuning import keep_freed_memory

    if work.keep_freed_memory:
        keep_freed_memory()
    shm, volume = attach(work.shm_name, work.shape, work.dtype)
    fmt, store = format_module(work.fmt), LocalStore(work.out)
    totals, counting = [0, 0], threading.Lock()   # objects, bytes
    errors: list[str] = []

    def blocks(volume) -> None:
        try:
            while True:
                with counter.get_lock():
                    n = counter.value
                    counter.value += 1
                if n >= len(work.boxes):
                    break
                box = work.boxes[n]
                for key, payload in encode_region(fmt, work.spec, volume[box.slices_zyx()], box):
                    if payload is not None:
                        store.put(key, payload)
                        with counting:
                            totals[0], totals[1] = totals[0] + 1, totals[1] + len(payload)
        except Exception as e:  # report instead of hanging the parent
            errors.append(f"{type(e).__name__}: {e}")

    _warm_up(fmt, work, volume)
    barrier.wait(timeout=300)
    start, used = time.monotonic(), _cpu()
    try:
        if work.threads == 1:
            blocks(volume)
        else:
            threads = [threading.Thread(target=blocks, args=(volume,)) for _ in range(work.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        results.put({"start": start, "end": time.monotonic(), "objects": totals[0],
                     "bytes": totals[1], "cpu": [b - a for a, b in zip(used, _cpu())],
                     **({"error": errors[0]} if errors else {})})
    finally:
        del volume
        shm.close()
