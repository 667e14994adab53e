"""Pixels of one block: fusing tiles into it, downsampling it, copying it out to chunks.

`fusion` (blending the tiles that reach a block; `mosaic`, a block of copyable tiles kept
as their pieces; `resample`, a view sampled through its affine), `pyramid` (levels and
downsampling), `copying` (the large strided copies on the way to chunks, byte order
converted as they go) and `value_range` (a block's min and max). The `*_kernel` modules
are their numba loops, each a module of its own so that only processes that need one
import numba. Pure array code: no Spark, no store.
"""
