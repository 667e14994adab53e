"""The header of a stored N5 block, read one way for the blocks we write
(`formats.n5.decode_chunk`) and for the N5 views of a BigStitcher project
(`tiles.containers`): a module of its own, below both, so that neither package imports
the other (review J: formats importing tiles loaded tifffile and the tile readers with
every N5 chunk decoder)."""

from __future__ import annotations

import struct

from pipelines.geometry import to_zyx


def n5_block_header(data: bytes) -> tuple[int, tuple[int, ...], int]:
    """(mode, the block's shape z, y, x, where its compressed payload starts) of one stored
    N5 block: mode 0 (default) or 1 (varlength, whose element count follows the shape);
    ValueError for another mode."""
    mode, ndim = struct.unpack_from(">HH", data)
    if mode not in (0, 1):
        raise ValueError(f"N5 block mode {mode} is not supported")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    return mode, to_zyx(dims), 4 + 4 * ndim + (4 if mode == 1 else 0)
