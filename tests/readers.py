"""Independent readers (tensorstore, zarr-python, z5py) used by the tests as judges of our output."""

from __future__ import annotations

import numpy as np
import tensorstore as ts
import z5py
import zarr

from pipelines.formats import TENSORSTORE_DRIVERS as DRIVERS


def tensorstore_read(container: str, dataset: str, fmt: str) -> np.ndarray:
    """The whole dataset as tensorstore reads it, as a z, y, x array."""
    store = ts.open({
        "driver": DRIVERS[fmt],
        "kvstore": {"driver": "file", "path": f"{container}/{dataset}"},
        "open": True,
    }).result()
    data = store.read().result()
    # tensorstore's n5 driver presents x, y, z; put it in numpy's z, y, x.
    return np.asarray(data).transpose(2, 1, 0) if fmt == "n5" else np.asarray(data)


def zarr2_read(container: str, dataset: str) -> np.ndarray:
    """The whole Zarr v2 dataset as zarr-python 3 reads it."""
    return np.asarray(zarr.open_group(container, mode="r", zarr_format=2)[dataset][...])


def zarr_read(container: str, dataset: str) -> np.ndarray:
    """The whole Zarr v3 dataset as zarr-python 3 reads it (z, y, x)."""
    group = zarr.open_group(container, mode="r")
    return np.asarray(group[dataset][...])


def z5py_read(container: str, dataset: str) -> np.ndarray:
    """The whole N5 or Zarr v2 dataset as z5py (the C++ z5 library) reads it (z, y, x)."""
    return np.asarray(z5py.File(container, mode="r")[dataset][...])
