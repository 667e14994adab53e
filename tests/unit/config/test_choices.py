"""Every choice a job file allows has an implementation, and every implementation a
choice. The job file's choices are listed in `config.model` (standard library only, so a
job is checked without numpy or Spark); the modules that implement them keep their own
tables. These tests keep the two sides from drifting apart."""

import numpy as np
import pytest

from pipelines import config
from pipelines.config.codecs import FORMAT_CODECS
from pipelines.formats import FORMATS, compressor_for
from pipelines.geometry import Box
from pipelines.layouts.paths import array_path
from pipelines.pixels import fusion, pyramid, resample
from pipelines.tiles import Tile


def test_every_format_choice_is_a_format_module():
    assert set(config.FORMATS) == set(FORMATS)
    assert set(config.LAYOUTS) == set(FORMATS) == set(FORMAT_CODECS)


@pytest.mark.parametrize("fmt, codec", [(f, c) for f, cs in FORMAT_CODECS.items() for c in cs])
def test_every_codec_choice_of_a_format_encodes_and_decodes(fmt, codec):
    """Each codec config allows for a format (config.codecs.FORMAT_CODECS) has a compressor
    (formats.codecs) whose bytes decode to the chunk."""
    compressor = compressor_for(config.CodecConfig(codec), fmt)
    chunk = np.arange(4096, dtype="uint16").reshape(16, 16, 16)
    codec_ = compressor.numcodec()
    data = compressor.encode(chunk)
    back = chunk.tobytes() if codec_ is None else bytes(codec_.decode(data))
    assert back == chunk.tobytes()


@pytest.mark.parametrize("layout", sorted({lay for lays in config.LAYOUTS.values() for lay in lays}))
def test_every_layout_choice_has_array_paths(layout):
    assert array_path(layout, 0, 0, 0)


def test_every_blending_choice_is_implemented_and_nothing_else():
    assert set(config.BLENDINGS) == set(fusion._BLEND)


@pytest.mark.parametrize("blending", config.BLENDINGS)
def test_the_blendings_refused_for_labels_are_those_that_make_new_values(blending):
    """`MIXING_BLENDINGS` (refused with downsample = "mode") against what each rule does
    where two label tiles (3 and 7, weighted unevenly) overlap."""
    tiles = [Tile(0, "a", (0, 0, 0), (8, 2, 2)), Tile(1, "b", (3, 0, 0), (8, 2, 2))]
    labels = {"a": np.full((2, 2, 8), 3, "uint16"), "b": np.full((2, 2, 8), 7, "uint16")}
    out = fusion.fuse(Box((0, 0, 0), (11, 2, 2)), tiles, (0, 0, 0), blending, "uint16",
                      read=lambda tile, region: labels[tile.path][region.slices_zyx()])
    assert (not set(np.unique(out)) <= {3, 7}) == (blending in config.MIXING_BLENDINGS)
    assert set(config.MIXING_BLENDINGS) <= set(config.BLENDINGS)


def test_interpolation_and_downsampling_choices_match_their_implementations():
    assert config.INTERPOLATIONS == resample.INTERPOLATIONS
    assert config.DOWNSAMPLING == pyramid.METHODS


@pytest.mark.parametrize("method", config.DOWNSAMPLING)
@pytest.mark.parametrize("dtype", config.DTYPES)
def test_every_dtype_choice_downsamples_to_itself(dtype, method):
    data = np.arange(8, dtype=dtype).reshape(2, 2, 2)
    assert pyramid.downsample(data, (2, 2, 2), method).dtype == np.dtype(dtype)


def test_reading_a_job_imports_neither_numpy_nor_boto3_nor_spark():
    """config.model's promise (its choices are checked without numpy), kept now that the
    config imports the storage package's URI parser and S3Options (trial R)."""
    import subprocess
    import sys
    code = ("import sys, pipelines.config; "
            "print(sorted(m for m in ('numpy', 'boto3', 'botocore', 'pyspark') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout
