"""The executor side: one block task, descriptor in → chunks written → receipt out.

`run_block` reads the tile regions the block needs, fuses them, splits the result into
the block's chunks, skips chunks equal to the fill value, encodes the rest and writes
each with one atomic put. It returns a `BlockReceipt`; no pixel data leaves the executor.
"""

from __future__ import annotations

import time
import zlib
from functools import lru_cache

import numpy as np

from .errors import BlockFailed
from .formats import format_module
from .fusion import fuse
from .plan import BlockReceipt, BlockTask, ExportPlan
from .storage import Store, open_store


class InjectedFailure(RuntimeError):
    """Raised by the `debug.fail_blocks` test hook; never raised in a normal run."""


@lru_cache(maxsize=8)
def _store(uri: str) -> Store:
    """One store object per output per executor process, opened on first use."""
    return open_store(uri)


def run_block(task: BlockTask, plan: ExportPlan, store: Store | None = None) -> BlockReceipt:
    """Fuse and write one block; raise BlockFailed naming the block if anything goes wrong."""
    try:
        return _run(task, plan, store or _store(plan.output.uri))
    except Exception as e:
        raise BlockFailed(f"block {list(task.index)}: {type(e).__name__}: {e}") from e


def _run(task: BlockTask, plan: ExportPlan, store: Store) -> BlockReceipt:
    started = time.perf_counter()
    spec, fmt = plan.array, format_module(plan.output.format)
    grid = plan.output.block_grid
    box = grid.block_box(task.index)
    data = fuse(box, plan.tiles_of(task), plan.offset, plan.blending, spec.np_dtype)
    written, skipped = [], []
    chunks = list(grid.chunks_of(task.index))
    for n, chunk in enumerate(chunks):
        if task.index in plan.fail_blocks and n == len(chunks) // 2:
            raise InjectedFailure("injected by debug.fail_blocks after writing half the chunks")
        region = plan.output.chunk_grid.chunk_box(chunk).relative_to(box.start)
        values = data[region.slices_zyx()]
        if _is_fill(values, spec.fill_value):
            skipped.append(chunk)
            continue
        encoded = fmt.encode_chunk(spec, values)
        store.put(fmt.chunk_key(spec, chunk), encoded)
        written.append((chunk, len(encoded), zlib.crc32(encoded)))
    return BlockReceipt(task.index, tuple(written), tuple(skipped),
                        _number(data.min()), _number(data.max()),
                        time.perf_counter() - started)


def _is_fill(values: np.ndarray, fill) -> bool:
    # any() needs no temporary array, and 0 is the usual fill value
    return not values.any() if fill == 0 else bool(np.all(values == fill))


def _number(value) -> float | int:
    return value.item()
