"""Every format × codec we write opens in tensorstore (and zarr-python for Zarr) with our values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config import CodecConfig
from pipelines.config.codecs import FORMAT_CODECS
from pipelines.errors import ConfigError
from pipelines.formats import FORMATS, ArraySpec, compressor_for
from pipelines.geometry import ChunkGrid, to_zyx
from pipelines.storage import LocalStore
from tests.readers import tensorstore_read, zarr_read

CASES = [(fmt, codec) for fmt, codecs in FORMAT_CODECS.items() for codec in codecs]
CASES += [("n5", {"name": "blosc", "cname": "lz4", "shuffle": "bit"}),
          ("zarr3", {"name": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "none"})]


def codec_config(codec) -> CodecConfig:
    if isinstance(codec, str):
        return CodecConfig(codec)
    return CodecConfig(codec["name"], tuple(sorted((k, v) for k, v in codec.items() if k != "name")))


def write_array(root, fmt: str, volume_zyx: np.ndarray, chunks_xyz, codec, path="data/s0"):
    """Write `volume_zyx` with our format code, chunk by chunk, then metadata."""
    module = FORMATS[fmt]
    spec = ArraySpec(path, tuple(reversed(volume_zyx.shape)), tuple(chunks_xyz),
                     volume_zyx.dtype.name, compressor_for(codec_config(codec), fmt))
    store = LocalStore(root)
    grid = ChunkGrid(spec.shape, spec.chunks)
    for index in np.ndindex(*grid.counts):
        box = grid.chunk_box(index)
        store.put(module.chunk_key(spec, index), module.encode_chunk(spec, volume_zyx[box.slices_zyx()]))
    for key, doc in module.array_documents(spec) + module.group_documents(spec):
        store.put(key, doc)
    return spec


def ramp_volume(shape_zyx, dtype) -> np.ndarray:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    hi = min(info.max, 60000) if info else 1000.0
    return (rng.random(shape_zyx) * hi).astype(dtype)


@pytest.mark.parametrize("fmt,codec", CASES, ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
def test_tensorstore_reads_every_format_and_codec(tmp_path, fmt, codec):
    volume = ramp_volume((13, 21, 34), "uint16")  # not a multiple of the chunk: edge chunks
    write_array(tmp_path, fmt, volume, (16, 8, 5), codec)
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path), "data/s0", fmt), volume)


@pytest.mark.parametrize("codec", FORMAT_CODECS["zarr3"])
def test_zarr_python_reads_zarr3(tmp_path, codec):
    volume = ramp_volume((9, 17, 30), "uint16")
    write_array(tmp_path, "zarr3", volume, (16, 8, 4), codec)
    np.testing.assert_array_equal(zarr_read(str(tmp_path), "data/s0"), volume)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_tile_dtypes_round_trip(tmp_path, fmt, dtype):
    volume = ramp_volume((5, 6, 7), dtype)
    write_array(tmp_path, fmt, volume, (4, 4, 4), "zstd")
    np.testing.assert_array_equal(tensorstore_read(str(tmp_path), "data/s0", fmt), volume)


def test_n5_edge_blocks_are_truncated_and_big_endian(tmp_path):
    volume = np.arange(3 * 5 * 7, dtype="uint16").reshape(3, 5, 7)  # z, y, x
    spec = write_array(tmp_path, "n5", volume, (4, 4, 4), "raw")
    data = (tmp_path / "data/s0/1/1/0").read_bytes()  # x=1, y=1, z=0: a 3 × 1 × 3 edge block
    assert data[:16] == bytes.fromhex("0000 0003 00000003 00000001 00000003".replace(" ", ""))
    block = np.frombuffer(data[16:], dtype=">u2").reshape(3, 1, 3)
    np.testing.assert_array_equal(block, volume[0:3, 4:5, 4:7])
    assert FORMATS["n5"].decode_chunk(spec, data).shape == (3, 1, 3)


def test_zarr3_keys_are_z_y_x_and_metadata_names_dimensions(tmp_path):
    volume = ramp_volume((3, 5, 9), "uint16")
    write_array(tmp_path, "zarr3", volume, (4, 4, 4), "zstd")
    assert (tmp_path / "data/s0/c/0/1/2").is_file()  # z=0, y=1, x=2
    meta = json.loads((tmp_path / "data/s0/zarr.json").read_text())
    assert meta["shape"] == [3, 5, 9] and meta["dimension_names"] == ["z", "y", "x"]
    # n5-viewer's x, y, z keys stay in N5: in a z, y, x array they were written reversed
    assert meta["attributes"] == {}
    assert json.loads((tmp_path / "zarr.json").read_text())["node_type"] == "group"
    assert json.loads((tmp_path / "data/zarr.json").read_text())["node_type"] == "group"


def test_n5_root_version_and_attributes(tmp_path):
    write_array(tmp_path, "n5", ramp_volume((2, 2, 2), "uint8"), (2, 2, 2), "gzip")
    assert json.loads((tmp_path / "attributes.json").read_text()) == {"n5": "2.5.1"}
    attrs = json.loads((tmp_path / "data/s0/attributes.json").read_text())
    assert attrs["compression"] == {"type": "gzip", "level": 6, "useZlib": False}
    assert attrs["dataType"] == "uint8" and attrs["blockSize"] == [2, 2, 2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_chunk_inverts_encode_chunk(fmt):
    spec = ArraySpec("a", (6, 5, 4), (6, 5, 4), "uint16", compressor_for(CodecConfig("zstd"), fmt))
    data = ramp_volume(to_zyx(spec.shape), "uint16")
    module = FORMATS[fmt]
    stored = bytes(module.encode_chunk(spec, data))   # as a store holds it (N5: header + payload, joined)
    np.testing.assert_array_equal(module.decode_chunk(spec, stored), data)


@pytest.mark.parametrize("codec,fmt,message", [
    (CodecConfig("zstandard"), "n5", "did you mean 'zstd'"),
    (CodecConfig("xz"), "zarr3", "not available for format 'zarr3'"),
    (CodecConfig("gzip", (("level", 12),)), "n5", "output.codec.level"),
    (CodecConfig("blosc", (("cnam", "lz4"),)), "n5", "no option 'cnam'"),
])
def test_bad_codec_choices_are_config_errors(codec, fmt, message):
    with pytest.raises(ConfigError, match=message):
        compressor_for(codec, fmt)


@pytest.mark.parametrize("level", [5.0, True, "5"])
def test_codec_levels_must_be_integers(level):
    with pytest.raises(ConfigError, match="output.codec.level"):
        compressor_for(CodecConfig("gzip", (("level", level),)), "n5")


@pytest.mark.parametrize("fmt", ["n5", "zarr3"])
def test_a_blosc_chunk_encodes_to_the_same_bytes_every_time(fmt):
    """Multi-threaded c-blosc stores blocks in completion order: the same chunk gave other
    bytes on a second encode, so a retried task did not rewrite identical objects. Run in
    a fresh interpreter, as on an executor: zarr-python, which the tests import, turns
    blosc's threads off itself."""
    import subprocess
    import sys
    code = f"""
import numpy as np
from pipelines.config import CodecConfig
from pipelines.formats import ArraySpec, compressor_for, format_module
spec = ArraySpec("a", (128, 128, 128), (128, 128, 128), "uint16",
                 compressor_for(CodecConfig("blosc", (("cname", "lz4"),)), "{fmt}"))
data = np.random.default_rng(0).poisson(200, (128, 128, 128)).astype("uint16")
encode = format_module("{fmt}").encode_chunk
first = encode(spec, data)
print(sum(encode(spec, data.copy()) != first for _ in range(8)))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0", f"{run.stdout.strip()} of 8 encodes differed"


@pytest.mark.parametrize("shuffle", ["none", "byte", "bit"])
@pytest.mark.parametrize("cname", ["lz4", "zstd", "blosclz"])
def test_blosc_by_python_blosc_gives_numcodecs_bytes(cname, shuffle):
    """Blosc is encoded by python-blosc (c-blosc with its AVX2 shuffle) where it can, by
    numcodecs elsewhere (a fixed blocksize): every object must be byte for byte the same
    either way, so retries and mixed installations write identical objects; the typesize
    is the array's itemsize (1 for bytes), as numcodecs takes it."""
    from pipelines.formats import codecs

    assert codecs.python_blosc is not None   # a dependency: the fast path is the one tested
    rng = np.random.default_rng(5)
    values = rng.poisson(300, (24, 40, 56))
    for level in (1, 5, 9):
        compressor = compressor_for(CodecConfig("blosc", (("cname", cname), ("clevel", level),
                                                          ("shuffle", shuffle))), "zarr3")
        for raw in [values.astype(">u2"), values.astype("<u2"), values.astype("<f4"),
                    values.astype("u1").tobytes(), b""]:
            assert compressor.encode(raw) == bytes(compressor.numcodec().encode(raw))


def test_n5_block_headers_of_both_modes_are_read_and_others_refused():
    """One reading of an N5 block's header for our blocks and for a project's N5 views:
    mode 0, mode 1 (varlength: its element count follows the shape), nothing else."""
    import struct

    from pipelines.n5_blocks import n5_block_header as block_header
    default = struct.pack(">HHIII", 0, 3, 5, 4, 3) + b"payload"
    varlength = struct.pack(">HHIIII", 1, 3, 5, 4, 3, 60) + b"payload"
    assert block_header(default) == (0, (3, 4, 5), 16)
    assert block_header(varlength) == (1, (3, 4, 5), 20)
    with pytest.raises(ValueError, match="N5 block mode 2 is not supported"):
        block_header(struct.pack(">HHIII", 2, 3, 5, 4, 3))


@pytest.mark.parametrize(("fmt", "codec"), CASES)
def test_every_codec_encodes_a_chunk_to_the_same_bytes_at_any_time(fmt, codec, monkeypatch):
    """Trial T: numcodecs' gzip put the time of the call into every chunk's header, so a
    rerun (or a retried task) wrote other bytes for the same values (DESIGN rule 3). Every
    codec gives the same bytes whatever the clock says, and its decoder reads them back."""
    import time

    from pipelines.formats.codecs import Compressor
    compressor = compressor_for(codec_config(codec), fmt)
    values = (np.arange(32 * 32 * 16, dtype=np.uint16) * 7 % 1009).reshape(16, 32, 32)
    first = compressor.encode(values)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)   # another second, another year
    assert compressor.encode(values) == first
    codec_ = Compressor.numcodec(compressor)
    decoded = first if codec_ is None else codec_.decode(first)
    assert np.array_equal(np.frombuffer(decoded, np.uint16).reshape(values.shape), values)
