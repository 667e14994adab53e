"""What every output format is told about the array it writes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .codecs import Compressor

Vec = tuple[int, ...]


@dataclass(frozen=True)
class ArraySpec:
    """One output array, per-axis values in x, y, z. Small and picklable: executors get it."""

    path: str                 # dataset path inside the container, e.g. "c0/s0" or "0"
    shape: Vec                # voxels
    chunks: Vec               # voxels per chunk
    dtype: str                # numpy dtype name, e.g. "uint16"
    compressor: Compressor
    resolution: tuple[float, float, float] = (1.0, 1.0, 1.0)  # µm per voxel
    offset: Vec = (0, 0, 0)   # stage coordinates (voxels) of voxel (0, 0, 0)
    fill_value: int = 0

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


def json_bytes(doc: dict) -> bytes:
    """Metadata documents as readers expect them: UTF-8 JSON, stable key order."""
    return (json.dumps(doc, indent=2) + "\n").encode()


def compress(spec: ArraySpec, raw: bytes | np.ndarray) -> bytes:
    codec = spec.compressor.numcodec()
    if codec is None:
        return bytes(raw) if not isinstance(raw, np.ndarray) else raw.tobytes()
    return bytes(codec.encode(raw))


def decompress(spec: ArraySpec, data: bytes) -> bytes:
    codec = spec.compressor.numcodec()
    return data if codec is None else bytes(codec.decode(data))
