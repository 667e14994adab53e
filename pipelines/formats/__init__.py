"""Output formats: chunk keys, chunk bytes and metadata documents — pure code, no I/O.

Each format module implements the `Format` protocol (`pipelines.formats.base`):
`chunk_key`, `encode_chunk` (or in two steps, `chunk_buffer` then `encode_buffer`),
`decode_chunk`, `array_documents`, `group_documents`, `NAME` (the config's
`output.format`) and `ROOT_KEY` (the document whose presence means a committed dataset).
"""

from pipelines.formats import n5, sharding, zarr2, zarr3
from pipelines.formats.base import ArraySpec, Format
from pipelines.formats.codecs import Compressor, compressor_for

FORMATS: dict[str, Format] = {"n5": n5, "zarr2": zarr2, "zarr3": zarr3}

__all__ = ["ArraySpec", "Compressor", "FORMATS", "Format", "compressor_for", "format_module", "sharding"]


def format_module(name: str) -> Format:
    """The format named `name` in a job's `output.format`."""
    return FORMATS[name]


# tensorstore's driver name for each format, for the specs we print and test with
TENSORSTORE_DRIVERS = {"n5": "n5", "zarr2": "zarr", "zarr3": "zarr3"}
