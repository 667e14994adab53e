"""Other writers of the same array: tensorstore, and dask + zarr-python 3.

Both are configured from the `ArraySpec` our planning made (shape, chunks, shard, dtype,
compressor): the N5 `compression` object and the Zarr v3 `zarr.json` come from this
project's format code, so the codec settings are the same by construction. Both write
the in-memory volume (already loaded; not timed) into data/bench/out/<run>.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from pipelines.formats import ArraySpec
from pipelines.formats import zarr3 as zarr3_format
from pipelines.geometry import to_zyx

# tensorstore's file kvstore fsyncs every file and folder by default; our LocalStore and
# zarr-python do not, so the comparison turns that off. Concurrency stays at its defaults.
TS_CONTEXT = {"file_io_sync": False}


def tensorstore_settings() -> dict:
    """The concurrency tensorstore runs with here (its defaults: data copy = hardware
    threads, file I/O = max(4, hardware threads)) and the one setting changed."""
    import importlib.metadata

    cores = os.cpu_count() or 1
    return {"version": importlib.metadata.version("tensorstore"),
            "data_copy_concurrency": f"default (shared: {cores} = hardware threads)",
            "file_io_concurrency": f"default (shared: {max(4, cores)} = max(4, hardware threads))",
            "context": TS_CONTEXT}


def zarr3_metadata(spec: ArraySpec) -> dict:
    """The zarr.json our export writes for this array (attributes dropped)."""
    doc = json.loads(zarr3_format.array_documents(spec)[0][1])
    doc.pop("attributes", None)
    return doc


def tensorstore_write(volume: np.ndarray, fmt: str, spec: ArraySpec, path: Path) -> float:
    """Create the array at `path` and write `volume` (z, y, x) with tensorstore; seconds
    of the write (creating the empty array's metadata is not timed)."""
    import tensorstore as ts

    if fmt == "n5":
        metadata = {"dimensions": list(spec.shape), "blockSize": list(spec.chunks),
                    "dataType": spec.dtype, "compression": spec.compressor.n5_json()}
        source = volume.T   # tensorstore's N5 arrays are indexed x, y, z
    else:
        metadata, source = zarr3_metadata(spec), volume
    store = ts.open({"driver": "n5" if fmt == "n5" else "zarr3",
                     "kvstore": {"driver": "file", "path": str(path)}, "metadata": metadata},
                    context=ts.Context(TS_CONTEXT), create=True, delete_existing=True).result()
    began = time.perf_counter()
    store.write(source).result()
    return time.perf_counter() - began


def dask_settings() -> dict:
    import importlib.metadata

    import dask
    import zarr

    return {"dask": importlib.metadata.version("dask"), "zarr": importlib.metadata.version("zarr"),
            "scheduler": "threads (dask default)",
            "array.chunk-size": "one shard (see dask_write)",
            "num_workers": dask.config.get("num_workers", None) or os.cpu_count(),
            "zarr async.concurrency": zarr.config.get("async.concurrency"),
            "zarr threading.max_workers": zarr.config.get("threading.max_workers")}


def dask_write(volume: np.ndarray, spec: ArraySpec, path: Path) -> float:
    """`da.to_zarr` of `volume` into a sharded Zarr v3 array created with zarr-python 3 and
    our codec settings; dask chunks are whole shards, so no two tasks share a shard.
    Seconds of `to_zarr` (creating the empty array is not timed).

    `to_zarr` rechunks its input to "auto" chunks of `array.chunk-size` bytes (default
    128 MiB); a 512³ uint16 shard is 256 MiB, so the setting is one shard (clipped to the
    volume), as dask's own warning advises: smaller, dask would split shards between tasks
    (unsafe); larger, it would merge shards into fewer tasks than cores."""
    import dask
    import dask.array as da
    import zarr

    doc = zarr3_metadata(spec)
    sharding = doc["codecs"][0]["configuration"] if spec.shard else None
    inner = sharding["codecs"] if sharding else doc["codecs"]
    shard = to_zyx(c * s for c, s in zip(spec.chunks, spec.shard)) if spec.shard else to_zyx(spec.chunks)
    array = zarr.create_array(
        store=zarr.storage.LocalStore(str(path)), shape=volume.shape, dtype=volume.dtype,
        chunks=to_zyx(spec.chunks), shards=shard if spec.shard else None, serializer=inner[0],
        compressors=inner[1:], fill_value=spec.fill_value, zarr_format=3, overwrite=True,
        dimension_names=("z", "y", "x"))
    one_shard = int(np.prod([min(s, n) for s, n in zip(shard, volume.shape)])) * volume.dtype.itemsize
    with dask.config.set({"array.chunk-size": one_shard}):
        planned = da.core.normalize_chunks("auto", volume.shape, dtype=volume.dtype, previous_chunks=shard)
        for axis, (chunks, step) in enumerate(zip(planned, shard)):
            if any(c % step for c in chunks[:-1]):   # only the last chunk may end mid-shard
                raise RuntimeError(f"dask would split shards along axis {axis}: {chunks}")
        source = da.from_array(volume, chunks=shard)
        began = time.perf_counter()
        with warnings.catch_warnings():
            # dask warns whenever a chunk is not a multiple of the shard, even when it
            # spans the whole axis (a volume thinner than one shard): checked above
            warnings.simplefilter("ignore", da.core.PerformanceWarning)
            da.to_zarr(source, array)
        return time.perf_counter() - began
