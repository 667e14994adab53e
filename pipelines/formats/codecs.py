"""Compressors: a checked codec choice → a numcodecs codec and each format's JSON.

Which codecs each format takes, their options and defaults: `pipelines.config.codecs`
(checked when the job is loaded).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass

import numcodecs
import numcodecs.blosc
import numpy as np

from pipelines.config import CodecConfig
from pipelines.config.codecs import codec_options

# c-blosc with its own threads stores a chunk's blocks in the order the threads finish, so
# one chunk can encode to different bytes (same values) from run to run, and a retried
# task would not rewrite identical objects (DESIGN rule 3; the limit's 2-process runs
# also ran 2 blosc threads each on 2 cores). Blosc runs single-threaded here: executors
# already run one task per core, as tensorstore runs one chunk per thread.
numcodecs.blosc.use_threads = False

# python-blosc's wheels build c-blosc with its AVX2 shuffle, numcodecs' with SSE2 only
# (`-mno-avx2`): the same c-blosc 1.21 and LZ4 1.10 sources, so the same bytes, in 28 %
# less time per 4 MiB uint16 chunk with lz4 (benchmarks/PROFILE.md, "Blosc's shuffle").
# It encodes blosc where it can (`Compressor.encode`); numcodecs decodes, and encodes
# where python-blosc is missing or a fixed blocksize is asked for (python-blosc's is a
# process-wide setting).
try:
    import blosc as python_blosc
except ImportError:   # numcodecs alone gives the same bytes, more slowly
    python_blosc = None
else:
    python_blosc.set_nthreads(1)   # one thread, as numcodecs above: the same bytes every time

BLOSC_SHUFFLE = {"none": 0, "byte": 1, "bit": 2}
_ZARR3_SHUFFLE = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle"}


@dataclass(frozen=True)
class Compressor:
    """A checked compressor with every option filled in."""

    name: str
    level: int = 0
    cname: str = ""
    shuffle: str = ""
    blocksize: int = 0

    def numcodec(self) -> numcodecs.abc.Codec | None:
        """The numcodecs codec that decodes this compressor's bytes and, but for gzip's
        header (see `encode`), produces them (None for raw)."""
        return {
            "raw": lambda: None,
            "gzip": lambda: numcodecs.GZip(level=self.level),
            "zstd": lambda: numcodecs.Zstd(level=self.level),
            "blosc": lambda: numcodecs.Blosc(
                cname=self.cname, clevel=self.level,
                shuffle=BLOSC_SHUFFLE[self.shuffle], blocksize=self.blocksize),
            "bzip2": lambda: numcodecs.BZ2(level=self.level),
            "xz": lambda: numcodecs.LZMA(preset=self.level),
        }[self.name]()

    def encode(self, raw: bytes | np.ndarray) -> bytes:
        """`raw` compressed (raw: its bytes): what `numcodec().encode(raw)` gives — for blosc
        also its typesize, which is the array's itemsize (1 for bytes) — by the fastest
        binding at hand; for gzip the same deflate stream with a header of time 0."""
        view = raw.data if isinstance(raw, np.ndarray) else memoryview(raw)
        if (self.name == "blosc" and python_blosc is not None and self.blocksize == 0
                and view.c_contiguous):
            return python_blosc.compress(view, typesize=view.itemsize, clevel=self.level,
                                         shuffle=BLOSC_SHUFFLE[self.shuffle], cname=self.cname)
        if self.name == "gzip":
            # numcodecs' GZip writes the time of the call into the header, so one chunk
            # encoded twice differed (trial T: 996 of 996 chunks of a rerun)
            # and a retried or speculative task did not rewrite identical bytes (DESIGN
            # rule 3). The same deflate stream with a header of time 0 ("none"):
            flat = view.cast("B") if view.c_contiguous else view.tobytes()
            return gzip.compress(flat, compresslevel=self.level, mtime=0)
        codec = self.numcodec()
        if codec is None:
            return view.tobytes()
        return bytes(codec.encode(raw))

    def n5_json(self) -> dict:
        """The N5 `compression` object, in the form tensorstore and N5-Java both accept."""
        documents: dict[str, Callable[[], dict]] = {
            "raw": lambda: {"type": "raw"},
            "gzip": lambda: {"type": "gzip", "level": self.level, "useZlib": False},
            "zstd": lambda: {"type": "zstd", "level": self.level},
            "blosc": lambda: {"type": "blosc", "cname": self.cname, "clevel": self.level,
                              "shuffle": BLOSC_SHUFFLE[self.shuffle], "blocksize": self.blocksize},
            "bzip2": lambda: {"type": "bzip2", "blockSize": self.level},
            "xz": lambda: {"type": "xz", "preset": self.level},
        }
        return documents[self.name]()

    def zarr3_json(self, itemsize: int) -> list[dict]:
        """The Zarr v3 codecs that follow the `bytes` codec (empty for raw)."""
        if self.name == "raw":
            return []
        if self.name == "blosc":
            config = {"cname": self.cname, "clevel": self.level,
                      "shuffle": _ZARR3_SHUFFLE[self.shuffle], "typesize": itemsize,
                      "blocksize": self.blocksize}
        elif self.name == "zstd":
            config = {"level": self.level, "checksum": False}
        else:
            config = {"level": self.level}
        return [{"name": self.name, "configuration": config}]


def compressor_for(codec: CodecConfig, fmt: str) -> Compressor:
    """The compressor of a codec choice for `fmt` (ConfigError naming the problem when
    `fmt` does not take it: `config.codecs.codec_options`)."""
    full = codec_options(codec, fmt)
    level = full.pop("level", full.pop("clevel", 0))
    return Compressor(codec.name, level=level, **full)
