"""Pixels of one block: fusing tiles into it, downsampling it, copying it out to chunks.

`fusion` (blending the tiles that reach a block; `mosaic`, a block of copyable tiles kept
as their pieces; `resample`, a view sampled through its affine), `pyramid` (levels and
downsampling), `copying` (the large strided copies on the way to chunks, byte order
converted as they go) and `value_range` (a block's min and max). The `*_kernel` modules
are their numba loops, each a module of its own so that only processes that need one
import numba. Pure array code: no Spark, no store.
"""

# Whether the numba loops keep what they compile on disk. Not when the code comes as a
# zip (spark-submit --py-files): numba keys a zip's cache by the zip's path, which Spark
# makes new for every application, so nothing was ever reused, NUMBA_CACHE_DIR was not
# looked at, and the per-user cache folder (often on a shared home) grew by a folder per
# application and worker (trial AG).
CACHE_ON_DISK = ".zip" not in __file__
