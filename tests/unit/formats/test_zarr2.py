"""Zarr v2 output opens in tensorstore (driver "zarr") and zarr-python 3 with our exact values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from pipelines.config import CodecConfig
from pipelines.config.codecs import FORMAT_CODECS
from pipelines.formats import zarr2
from pipelines.formats.base import ArraySpec
from pipelines.formats.codecs import Compressor, compressor_for
from pipelines.geometry import ChunkGrid
from pipelines.storage import LocalStore
from tests.readers import tensorstore_read, zarr2_read

# every codec Zarr v2 offers, with its defaults (trial R: a hand-written list missed a new
# one), and blosc with other options
COMPRESSORS = {name: compressor_for(CodecConfig(name), "zarr2") for name in FORMAT_CODECS["zarr2"]}
COMPRESSORS["blosc-lz4-bit"] = Compressor("blosc", level=1, cname="lz4", shuffle="bit")


def write_zarr2(root, path: str, volume: np.ndarray, chunks_xyz, compressor: Compressor,
                lead_names=(), fill_value=0, skip_fill=False) -> ArraySpec:
    """Write `volume` (lead axes, then z, y, x) with our zarr2 code, chunk by chunk, metadata last."""
    lead = volume.shape[:len(lead_names)]
    spec = ArraySpec(path, tuple(reversed(volume.shape[len(lead):])), tuple(chunks_xyz),
                     volume.dtype.name, compressor, fill_value=fill_value,
                     lead=tuple(lead), lead_names=tuple(lead_names))
    store = LocalStore(root)
    grid = ChunkGrid(spec.shape, spec.chunks)
    for lead_index in np.ndindex(*lead):
        for index in np.ndindex(*grid.counts):
            block = volume[lead_index][grid.chunk_box(index).slices_zyx()]
            if skip_fill and np.all(block == fill_value):
                continue
            store.put(zarr2.chunk_key(spec, index, lead_index), zarr2.encode_chunk(spec, block))
    for key, doc in zarr2.array_documents(spec) + zarr2.group_documents(spec):
        store.put(key, doc)
    return spec


def ts_read(root, path: str) -> np.ndarray:
    return tensorstore_read(str(root), path, "zarr2")


def zarr_read(root, path: str) -> np.ndarray:
    return zarr2_read(str(root), path)


def random_volume(shape, dtype, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("codec", COMPRESSORS)
def test_readers_get_exact_values(tmp_path, codec, dtype):
    volume = random_volume((11, 21, 34), dtype)  # z, y, x: no axis a multiple of its chunk
    write_zarr2(tmp_path, "data/s0", volume, (16, 8, 5), COMPRESSORS[codec])
    np.testing.assert_array_equal(ts_read(tmp_path, "data/s0"), volume)
    np.testing.assert_array_equal(zarr_read(tmp_path, "data/s0"), volume)


@pytest.mark.parametrize("codec", ["zstd", "blosc"])
def test_lead_axes_t_c(tmp_path, codec):
    volume = random_volume((2, 3, 5, 9, 13), "uint16")  # t, c, z, y, x
    spec = write_zarr2(tmp_path, "img/0", volume, (8, 4, 3), COMPRESSORS[codec], ("t", "c"))
    assert (tmp_path / "img/0/1/2/1/2/1").is_file()  # t=1, c=2, z=1, y=2, x=1
    got = ts_read(tmp_path, "img/0")
    assert got.shape == (2, 3, 5, 9, 13)
    np.testing.assert_array_equal(got, volume)
    np.testing.assert_array_equal(zarr_read(tmp_path, "img/0"), volume)
    meta = json.loads((tmp_path / "img/0/.zarray").read_text())
    assert meta["shape"] == [2, 3, 5, 9, 13] and meta["chunks"] == [1, 1, 3, 4, 8]
    with pytest.raises(ValueError):
        zarr2.chunk_key(spec, (0, 0, 0))  # a lead array needs its lead index


def test_missing_chunks_read_as_fill_value(tmp_path):
    volume = np.full((6, 10, 12), 7, dtype="uint16")
    volume[:3, :5, :6] = np.arange(90, dtype="uint16").reshape(3, 5, 6)
    write_zarr2(tmp_path, "a", volume, (6, 5, 3), COMPRESSORS["zstd"], fill_value=7, skip_fill=True)
    assert len(list(LocalStore(tmp_path).list("a/"))) == 2  # one chunk + .zarray
    np.testing.assert_array_equal(ts_read(tmp_path, "a"), volume)
    np.testing.assert_array_equal(zarr_read(tmp_path, "a"), volume)


def test_edge_chunks_are_full_size_and_padded(tmp_path):
    volume = np.arange(3 * 5 * 7, dtype="uint16").reshape(3, 5, 7)
    spec = write_zarr2(tmp_path, "a", volume, (4, 4, 4), COMPRESSORS["raw"], fill_value=9)
    data = (tmp_path / "a/0/1/1").read_bytes()  # z=0, y=1, x=1: 3 × 1 × 3 real voxels
    assert len(data) == 4 * 4 * 4 * 2
    chunk = np.frombuffer(data, dtype="<u2").reshape(4, 4, 4)
    np.testing.assert_array_equal(chunk[:3, :1, :3], volume[0:3, 4:5, 4:7])
    assert np.all(chunk[3:] == 9) and np.all(chunk[:, 1:] == 9) and np.all(chunk[:, :, 3:] == 9)
    np.testing.assert_array_equal(zarr2.decode_chunk(spec, data), chunk)


@pytest.mark.parametrize("codec,expected", [
    ("raw", None),
    ("gzip", {"id": "gzip", "level": 6}),
    ("zstd", {"id": "zstd", "level": 3}),
    ("blosc", {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1, "blocksize": 0}),
    ("blosc-lz4-bit", {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": 2, "blocksize": 0}),
])
def test_compressor_config_is_the_numcodecs_config(codec, expected):
    compressor = COMPRESSORS[codec]
    assert zarr2.compressor_config(compressor) == expected
    if expected is not None:  # and it names the codec that made the bytes
        assert compressor.numcodec().get_config() == {**compressor.numcodec().get_config(), **expected}


def test_codecs_zarr2_does_not_offer_are_refused():
    with pytest.raises(ValueError, match="zarr2"):
        zarr2.compressor_config(Compressor("bzip2", level=9))


@pytest.mark.parametrize("dtype,expected,fill", [("uint8", "|u1", 0), ("uint16", "<u2", 0),
                                                 ("int32", "<i4", 0), ("float32", "<f4", 0.0),
                                                 ("float64", "<f8", 0.0)])
def test_zarray_document(dtype, expected, fill):
    spec = ArraySpec("x/y/0", (10, 20, 30), (4, 5, 6), dtype, COMPRESSORS["zstd"])
    (key, doc), = zarr2.array_documents(spec)
    assert key == "x/y/0/.zarray"
    meta = json.loads(doc)
    assert meta == {"zarr_format": 2, "shape": [30, 20, 10], "chunks": [6, 5, 4],
                    "dtype": expected, "compressor": {"id": "zstd", "level": 3},
                    "fill_value": fill, "order": "C", "filters": None,
                    "dimension_separator": "/"}
    assert type(meta["fill_value"]) is type(fill)


def test_zgroup_for_root_and_every_intermediate_group():
    spec = ArraySpec("a/b/0", (4, 4, 4), (4, 4, 4), "uint8", COMPRESSORS["raw"])
    docs = zarr2.group_documents(spec)
    assert [key for key, _ in docs] == ["a/b/.zgroup", "a/.zgroup", ".zgroup"]
    assert all(json.loads(doc) == {"zarr_format": 2} for _, doc in docs)
    assert zarr2.ROOT_KEY == ".zgroup"


def test_zarr_python_sees_the_hierarchy(tmp_path):
    volume = random_volume((4, 6, 8), "uint8")
    write_zarr2(tmp_path, "a/b/0", volume, (4, 4, 4), COMPRESSORS["gzip"])
    root = zarr.open_group(str(tmp_path), mode="r", zarr_format=2)
    assert isinstance(root["a"], zarr.Group) and isinstance(root["a/b"], zarr.Group)
    array = root["a/b/0"]
    assert array.metadata.dimension_separator == "/"
    np.testing.assert_array_equal(array[...], volume)
