"""Serving a range of a slice's MIX block stream: runs of contiguous rows, column by column.

A MIX ticket names positions ``[start, stop)`` of a slice's block stream
(:mod:`feeder.protocol.mix`): a run of rows, then whole blocks of ``block_rows``
contiguous rows in a seeded order, then a run. Fixed-width columns without
nulls are gathered from the memory-mapped IPC file with one ``numpy.take`` of
whole blocks (each a ``block_rows × width`` contiguous copy: near memory
bandwidth, no per-row random access); other columns (strings, lists, booleans,
nulls) with Arrow ``take`` of the same rows.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from feeder.protocol.mix import BlockRuns, block_order, block_runs
from feeder.protocol.window_order import WindowScratch, item_type
from jobs.errors import FeederError

_ORDER_LOCK = threading.Lock()


def cached_block_order(
    num_rows: int, block_rows: int, seed: int, epoch: int, slice_id: int
) -> np.ndarray:
    """:func:`feeder.protocol.mix.block_order`, built once per slice and epoch (consumers
    read a slice's block stream in many pieces)."""
    with _ORDER_LOCK:
        return _block_order(num_rows, block_rows, seed, epoch, slice_id)


@functools.lru_cache(maxsize=64)
def _block_order(
    num_rows: int, block_rows: int, seed: int, epoch: int, slice_id: int
) -> np.ndarray:
    order = block_order(num_rows, block_rows=block_rows, seed=seed, epoch=epoch, slice_id=slice_id)
    order.setflags(write=False)
    return order


def _fixed_width(array: pa.Array) -> np.dtype | None:
    """The numpy item type of a null-free fixed-width primitive array, else None."""
    kind = array.type
    if array.null_count or not pa.types.is_primitive(kind) or kind.bit_width % 8:
        return None
    return item_type(kind.bit_width // 8)


def _check_blocks(blocks: np.ndarray, full: int) -> None:
    """Raise FeederError unless every block number lies in ``[0, full)``."""
    if len(blocks) and (int(blocks.min()) < 0 or int(blocks.max()) >= full):
        raise FeederError(f"block numbers outside the slice's {full} whole blocks")


def _gather_values(
    values: np.ndarray, runs: BlockRuns, out: np.ndarray | None = None
) -> np.ndarray:
    """The rows ``runs`` names of ``values``, into ``out`` (None: a new array)."""
    b = runs.block_rows
    full = len(values) // b
    if out is None:
        out = np.empty(runs.num_rows, dtype=values.dtype)
    head = runs.head[1] - runs.head[0]
    out[:head] = values[runs.head[0] : runs.head[1]]
    middle = len(runs.blocks) * b
    if middle:
        blocks = values[: full * b].reshape(full, b)
        _check_blocks(runs.blocks, full)
        # mode="clip": numpy buffers a take into ``out`` in its default mode (a second
        # copy: 3x slower here); the check above keeps an out-of-range block an error
        target = out[head : head + middle].reshape(-1, b)
        np.take(blocks, runs.blocks, axis=0, out=target, mode="clip")
    out[head + middle :] = values[runs.tail[0] : runs.tail[1]]
    return out


def gather_runs(table: pa.Table, runs: BlockRuns) -> pa.Table:
    """Return the rows ``runs`` names of ``table`` (one record batch per column chunk), in
    order."""
    arrays: list[pa.Array] = []
    rows: pa.Array | None = None
    for column in table.columns:
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        item = _fixed_width(chunk)
        if item is None:
            if rows is None:
                rows = pa.array(runs.rows())
            arrays.append(chunk.take(rows))
            continue
        buffer = chunk.buffers()[1]
        values = np.frombuffer(buffer, dtype=item, count=chunk.offset + len(chunk))[chunk.offset :]
        picked = _gather_values(values, runs)
        arrays.append(pa.Array.from_buffers(chunk.type, len(picked), [None, pa.py_buffer(picked)]))
    return pa.Table.from_arrays(arrays, schema=table.schema)


def read_block_stream(
    table: pa.Table,
    *,
    slice_id: int,
    start: int,
    stop: int,
    block_rows: int,
    seed: int,
    epoch: int,
    sizes: Sequence[int],
) -> Iterator[pa.RecordBatch]:
    """Yield positions ``[start, stop)`` of slice ``slice_id``'s block stream (``table`` is the
    whole slice, projected), cut into batches of ``sizes`` rows."""
    order = cached_block_order(table.num_rows, block_rows, seed, epoch, slice_id)
    lo = start
    for size in sizes:
        runs = block_runs(
            table.num_rows,
            lo,
            lo + size,
            block_rows=block_rows,
            seed=seed,
            epoch=epoch,
            slice_id=slice_id,
            order=order,
        )
        yield from gather_runs(table, runs).to_batches()
        lo += size


class GatherScratch:
    """Reusable buffers, one per column, into which a window's pieces are gathered: one per
    stream, used by one thread at a time (a fresh array per window and column would be
    mapped anew, a page fault per 4 KiB page on top of the copy)."""

    def __init__(self) -> None:
        self._columns: list[WindowScratch] = []

    def buffer(self, column: int, count: int, item: np.dtype) -> np.ndarray:
        """``count`` items of ``item`` for ``column`` (valid until the next call for it)."""
        while len(self._columns) <= column:
            self._columns.append(WindowScratch())
        return self._columns[column].buffer(count, item)


def gather_column(
    pieces: Sequence[tuple[pa.Table, BlockRuns]], column: int, scratch: GatherScratch
) -> pa.Array:
    """Return column ``column`` of the rows each ``(table, runs)`` names, concatenated in
    order (the tables share a schema). A fixed-width column without nulls is gathered
    into ``scratch`` (valid until its next use for this column); others are taken with
    Arrow."""
    kind = pieces[0][0].schema.field(column).type
    rows = sum(runs.num_rows for _, runs in pieces)
    chunks = [
        array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
        for array in (table.column(column) for table, _ in pieces)
    ]
    items = {_fixed_width(chunk) for chunk in chunks}
    item = items.pop() if len(items) == 1 else None
    if item is None:
        taken = [
            chunk.take(pa.array(runs.rows()))
            for chunk, (_, runs) in zip(chunks, pieces, strict=True)
        ]
        return pa.concat_arrays(taken) if taken else pa.array([], kind)
    joined = scratch.buffer(column, rows, item)
    offset = 0
    for chunk, (_, runs) in zip(chunks, pieces, strict=True):
        values = np.frombuffer(chunk.buffers()[1], dtype=item, count=chunk.offset + len(chunk))[
            chunk.offset :
        ]
        _gather_values(values, runs, out=joined[offset : offset + runs.num_rows])
        offset += runs.num_rows
    return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(joined)])
