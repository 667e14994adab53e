"""The chunks of a region encoded a row at a time (pure code, no I/O).

Before its codec, each chunk is copied out of the region into a buffer of its own (byte
order, padding). Copied one chunk after another, each copy reads only a part of every
row of the region: per 4 MiB `uint16` chunk, 0.66 ms out of a 256-voxel-wide block and
1.17 ms out of a 512-wide one, against 0.44 ms for either when the chunks side by side
along x are copied together, one whole row of the region after another
(`copying.copy_columns`; benchmarks/PROFILE.md, "Whole rows"). So chunks next to each
other along x — up to ROW_CHUNKS of them, whose buffers are alive at once — go through one
copy, then through their codec one by one. The bytes are those of `encode_chunk`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pipelines.formats.base import ArraySpec, Format, is_fill
from pipelines.geometry import Box
from pipelines.pixels.copying import MAX_COLUMNS
from pipelines.pixels.mosaic import Region, copy_out
from pipelines.pixels.value_range import ValueRange
from pipelines.storage.base import Pieces

# Chunks copied in one pass: their buffers are alive together (plan.memory counts them).
ROW_CHUNKS = MAX_COLUMNS


def encode_chunks(fmt: Format, spec: ArraySpec, data_zyx: Region, start: Sequence[int],
                  boxes: Sequence[Box], seen: ValueRange | None = None
                  ) -> Iterator[bytes | Pieces | None]:
    """The stored bytes of each chunk of `boxes` (x, y, z regions of the array, in order,
    x fastest), None for a chunk whose values all equal the fill value. `data_zyx` holds a
    region of the array starting at voxel `start` (x, y, z) that contains every box; `seen`,
    if given, is shown every value of the boxes."""
    if len(boxes) == 1:   # a region of one chunk (tiny blocks: a million of them per run)
        values = data_zyx[boxes[0].relative_to(start).slices_zyx()]
        yield None if is_fill(values, spec.fill_value, seen) else fmt.encode_chunk(spec, values, seen)
        return
    for row in _rows(boxes):
        run: list[tuple[Box, Region]] = []   # neighbours along x, none of them all fill
        for box in row:
            values = data_zyx[box.relative_to(start).slices_zyx()]
            if is_fill(values, spec.fill_value, seen):
                yield from _encode_run(fmt, spec, data_zyx, start, run, seen)
                run = []
                yield None
                continue
            run.append((box, values))
            if len(run) == ROW_CHUNKS:
                yield from _encode_run(fmt, spec, data_zyx, start, run, seen)
                run = []
        yield from _encode_run(fmt, spec, data_zyx, start, run, seen)


def _rows(boxes: Sequence[Box]) -> Iterator[list[Box]]:
    """`boxes` in runs of neighbours along x: each box starting where the one before it
    stops, over the same y and z."""
    row: list[Box] = []
    for box in boxes:
        if row and not (box.start[0] == row[-1].stop[0] and box.start[1:] == row[-1].start[1:]
                        and box.stop[1:] == row[-1].stop[1:]):
            yield row
            row = []
        row.append(box)
    if row:
        yield row


def _encode_run(fmt: Format, spec: ArraySpec, data_zyx: Region, start: Sequence[int],
                run: list[tuple[Box, Region]], seen: ValueRange | None
                ) -> Iterator[bytes | Pieces]:
    """The bytes of chunks side by side along x, copied into their buffers in one pass."""
    if not run:
        return
    if len(run) == 1:
        yield fmt.encode_chunk(spec, run[0][1], seen)
        return
    buffers, regions = [], []
    for slot, (_, values) in enumerate(run):   # buffers alive together: a slot each
        buffer, region = fmt.chunk_buffer(spec, values.shape, slot)
        buffers.append(buffer)
        regions.append(region)
    whole = Box(run[0][0].start, run[-1][0].stop)
    copy_out(regions, data_zyx[whole.relative_to(start).slices_zyx()], seen)
    for buffer, (_, values) in zip(buffers, run):
        yield fmt.encode_buffer(spec, buffer, values.shape)
