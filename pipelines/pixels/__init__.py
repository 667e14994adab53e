"""Pixels of one block: fusing tiles into it, downsampling it, copying it out to chunks.

`fusion` (blending the tiles that reach a block; `mosaic`, a block of copyable tiles kept
as their pieces; `resample`, a view sampled through its affine), `pyramid` (levels and
downsampling), `copying` (the large strided copies on the way to chunks, byte order
converted as they go) and `value_range` (a block's min and max). The `*_kernel` modules
are their numba loops, each a module of its own so that only processes that need one
import numba. Pure array code: no Spark, no store.
"""

import os

# Bumped whenever fusion, resampling or downsampling give other voxels for the same plan.
# The export's fingerprint holds it: a committed dataset or an unfinished run of earlier
# voxels is then "other settings", not taken for this job's (trial AK: an output of the
# version before `closest` measured from a resampled tile's true centre was "nothing to
# do", and a resume mixed blocks of both; the package version never changed).
# 2: 2026-12-07 evening (closest's centre; NaN past a tile's edge under linear blending).
METHOD = 2

# Whether the numba loops keep what they compile on disk: only where this code is a file
# of its own. Not from a zip (spark-submit --py-files): numba keys a zip's cache by the
# zip's path, which Spark makes new for every application, so nothing was ever reused,
# NUMBA_CACHE_DIR was not looked at, and the per-user cache folder (often on a shared
# home) grew by a folder per application and worker (trial AG); from an egg or a zipapp
# numba has no place for a cache at all, and refuses to compile (review).
CACHE_ON_DISK = os.path.isfile(__file__)
