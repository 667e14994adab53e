"""Per-process settings of the processes that encode and write objects (executors' Python
workers, and the benchmark's limit workers).

Why (benchmarks/PROFILE.md, "The limit"): numcodecs' blosc and zstd allocate a fresh
output buffer of the chunk's full size for every chunk (4 MiB for a 128³ uint16 chunk) and
shrink it to the compressed size. glibc serves that from a fresh mmap and, because its
dynamic mmap threshold only rises to the size of the *shrunk* block that is freed, does
so for every chunk: each chunk's compressed bytes land on newly faulted, zeroed pages
(≈ 540 minor faults per 2 MiB chunk, 0.7-2 ms of system time), and the fused 32 MiB
blocks of the export another 8 192 faults each (128 MiB shard objects 32 768). A fixed
mmap threshold above those sizes and a trim threshold that keeps freed memory in the heap
let every later allocation reuse pages already mapped: no faults, same bytes. The cost: a
worker's resident memory stays near its peak between tasks.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 * 2**20  # allocations below this come from the heap (a 512³ uint16 shard block: 256 MiB)
TRIM_THRESHOLD = 512 * 2**20  # free memory the heap keeps before returning it to the system

_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Once per process: let glibc reuse freed buffers instead of mapping fresh pages for
    each chunk (see the module docstring). True if the setting is in effect; elsewhere
    (musl, macOS) nothing happens and False is returned. Output bytes do not change."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                              and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                pass
    return _tuned

