"""The window order of a MIX window: its pieces joined, then moved in seeded units (PROTOCOL.md).

A MIX window's pieces, concatenated in slice order, are ordered by
:func:`feeder.protocol.mix.window_units`; :func:`mix_window` applies that order and
keeps the output rows ``[keep_start, keep_stop)``. Fixed-width columns without
nulls are moved with one ``numpy.take`` of whole units per column (one random read
per unit, not per row); other columns with Arrow ``take`` of the rows. Whoever holds
the pieces applies it: the data node serving a whole window
(:mod:`feeder.protocol.window_gather`), else the consumer (:mod:`feeder.client.windows`).
Pure pyarrow and numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from feeder.protocol.mix import UNIT_ROWS, window_permutation, window_units
from jobs.errors import FeederError


def item_type(width: int) -> np.dtype:
    """An item type of ``width`` bytes: unsigned integers where numpy has one (fast take)."""
    return np.dtype({1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(width, f"V{width}"))


def plain(chunks: Sequence[pa.Array], kind: pa.DataType) -> bool:
    return (
        pa.types.is_primitive(kind)
        and kind.bit_width % 8 == 0
        and not any(c.null_count for c in chunks)
    )


class WindowScratch:
    """A reusable buffer in which a window's received chunks of one column are joined
    before they are ordered: one per consumer stream, used by one thread at a time.

    A fresh array per window and column is mapped anew every time (the allocator hands
    blocks this large back to the system when they are freed): a page fault per 4 KiB
    page, on top of the copy. This buffer stays mapped, sized for the widest column of
    the largest window so far.
    """

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.uint8)

    def buffer(self, count: int, item: np.dtype) -> np.ndarray:
        """``count`` items of ``item`` in this buffer (valid until the next call)."""
        nbytes = count * item.itemsize
        if len(self._buffer) < nbytes:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        return self._buffer[:nbytes].view(item)

    def join(self, parts: Sequence[np.ndarray], item: np.dtype) -> np.ndarray:
        """``parts`` (arrays of ``item``) end to end, in this buffer (valid until the next
        call)."""
        if len(parts) == 1:
            return parts[0]
        joined = self.buffer(sum(len(p) for p in parts), item)
        np.concatenate(parts, out=joined)
        return joined


def permute_plain(
    chunks: Sequence[pa.Array],
    kind: pa.DataType,
    units: np.ndarray,
    keep: tuple[int, int],
    scratch: WindowScratch,
) -> pa.Array:
    """Rows ``keep`` of the window order of a fixed-width column: the chunks joined in
    ``scratch``, then whole units moved with one ``numpy.take`` of ``UNIT_ROWS``-row items
    into a new buffer (which the batch, and its tensors, then own), the tail rows copied
    in order."""
    width = kind.bit_width // 8
    item = item_type(width)
    parts = [
        np.frombuffer(c.buffers()[1], dtype=item, count=c.offset + len(c))[c.offset :]
        for c in chunks
    ]
    values = scratch.join(parts, item)
    start, stop = keep
    head = len(units) * UNIT_ROWS  # output rows from here on are the window's tail rows
    first = start // UNIT_ROWS
    last = -(-min(stop, head) // UNIT_ROWS) if start < head else first
    tail = max(0, stop - max(start, head))
    # one buffer from Arrow's pool (its pages are reused, not faulted in anew each window)
    out = pa.allocate_buffer(((last - first) * UNIT_ROWS + tail) * width)
    moved = np.frombuffer(out, dtype=np.uint8)
    if last > first:
        # whole units as rows of UNIT_ROWS * width bytes: one memcpy-like move per unit
        words = (width * UNIT_ROWS) // 8 if width * UNIT_ROWS % 8 == 0 else 0
        if words:
            source = values[:head].view(np.uint64).reshape(-1, words)
            target = moved[: (last - first) * UNIT_ROWS * width].view(np.uint64)
            np.take(source, units[first:last], axis=0, out=target.reshape(-1, words), mode="clip")
        else:
            blocks = values[:head].view(np.dtype(f"V{width * UNIT_ROWS}"))
            target = moved[: (last - first) * UNIT_ROWS * width].view(blocks.dtype)
            np.take(blocks, units[first:last], out=target, mode="clip")  # no buffered copy
    if tail:  # the window's tail rows follow the units in order
        moved[(last - first) * UNIT_ROWS * width :] = values[max(start, head) : stop].view(np.uint8)
    offset = start - first * UNIT_ROWS if start < head else 0
    length = stop - start
    return pa.Array.from_buffers(kind, length, [None, out], offset=offset)


def mix_window(
    batches: Sequence[pa.RecordBatch],
    schema: pa.Schema,
    *,
    rows: int,
    keep_start: int,
    keep_stop: int,
    seed: int,
    epoch: int,
    window: int,
    scratch: WindowScratch | None = None,
) -> pa.RecordBatch:
    """Return output rows ``[keep_start, keep_stop)`` of window ``window``'s order whose
    pieces, concatenated in slice order, are ``batches`` (``rows`` rows in all).

    ``scratch`` is the stream's join buffer (None: a new one for this call). Raises
    FeederError if the pieces do not hold ``rows`` rows.
    """
    got = sum(b.num_rows for b in batches)
    if got != rows:
        raise FeederError(f"window {window}: pieces hold {got} rows, the plan says {rows}")
    units = window_units(rows, seed=seed, epoch=epoch, window=window).astype(np.intp)
    keep = (keep_start, keep_stop)
    scratch = scratch if scratch is not None else WindowScratch()
    row_idx: pa.Array | None = None
    arrays: list[pa.Array] = []
    for i, field in enumerate(schema):
        chunks = [b.column(i) for b in batches]
        if plain(chunks, field.type):
            arrays.append(permute_plain(chunks, field.type, units, keep, scratch))
            continue
        if row_idx is None:
            perm = window_permutation(rows, seed=seed, epoch=epoch, window=window)
            row_idx = pa.array(perm[keep_start:keep_stop])
        arrays.append(pa.concat_arrays(chunks).take(row_idx))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
