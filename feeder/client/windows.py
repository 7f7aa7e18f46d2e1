"""The consumer's half of the MIX shuffle: order one window's rows (PROTOCOL.md).

A MIX window arrives as one piece per slice (each read from a data node with
failover, like any slice range); :func:`mix_window` concatenates the pieces in
slice order and applies the window's seeded order of ``UNIT_ROWS``-row units
(:func:`feeder.protocol.mix.window_units`), keeping the output rows
``[keep_start, keep_stop)`` the consumer delivers. Fixed-width columns without
nulls are moved with one ``numpy.take`` of whole units per column (one random read
per unit, not per row); other columns with Arrow ``take`` of the rows. Pure pyarrow
and numpy: no torch, no pyspark.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from feeder.protocol.mix import UNIT_ROWS, window_permutation, window_units
from jobs.errors import FeederError


def _item(width: int) -> np.dtype:
    """An item type of ``width`` bytes: unsigned integers where numpy has one (fast take)."""
    return np.dtype({1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(width, f"V{width}"))


def _plain(chunks: Sequence[pa.Array], kind: pa.DataType) -> bool:
    return (
        pa.types.is_primitive(kind)
        and kind.bit_width % 8 == 0
        and not any(c.null_count for c in chunks)
    )


def _permute_plain(
    chunks: Sequence[pa.Array], kind: pa.DataType, units: np.ndarray, keep: tuple[int, int]
) -> pa.Array:
    """Rows ``keep`` of the window order of a fixed-width column: whole units moved with
    one ``numpy.take`` of ``UNIT_ROWS``-row items, the tail rows copied in order."""
    width = kind.bit_width // 8
    item = _item(width)
    parts = [
        np.frombuffer(c.buffers()[1], dtype=item, count=c.offset + len(c))[c.offset :]
        for c in chunks
    ]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
    start, stop = keep
    head = len(units) * UNIT_ROWS  # output rows from here on are the window's tail rows
    rows = np.empty(0, dtype=item)
    if start < head:
        first, last = start // UNIT_ROWS, -(-min(stop, head) // UNIT_ROWS)
        blocks = values[:head].view(np.dtype(f"V{width * UNIT_ROWS}"))
        moved = np.empty(last - first, dtype=blocks.dtype)
        np.take(blocks, units[first:last], out=moved, mode="clip")  # no buffered copy
        rows = moved.view(item)[start - first * UNIT_ROWS : min(stop, head) - first * UNIT_ROWS]
    if stop > head:  # the window's tail rows follow the units in order
        rows = np.concatenate([rows, values[max(start, head) : stop]])
    return pa.Array.from_buffers(kind, len(rows), [None, pa.py_buffer(rows)])


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
) -> pa.RecordBatch:
    """Return output rows ``[keep_start, keep_stop)`` of window ``window``'s order whose
    pieces, concatenated in slice order, are ``batches`` (``rows`` rows in all).

    Raises FeederError if the pieces do not hold ``rows`` rows.
    """
    got = sum(b.num_rows for b in batches)
    if got != rows:
        raise FeederError(f"window {window}: pieces hold {got} rows, the plan says {rows}")
    units = window_units(rows, seed=seed, epoch=epoch, window=window).astype(np.intp)
    keep = (keep_start, keep_stop)
    row_idx: pa.Array | None = None
    arrays: list[pa.Array] = []
    for i, field in enumerate(schema):
        chunks = [b.column(i) for b in batches]
        if _plain(chunks, field.type):
            arrays.append(_permute_plain(chunks, field.type, units, keep))
            continue
        if row_idx is None:
            perm = window_permutation(rows, seed=seed, epoch=epoch, window=window)
            row_idx = pa.array(perm[keep_start:keep_stop])
        arrays.append(pa.concat_arrays(chunks).take(row_idx))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: pieces read at once (one more than the one being received)
_PIECE_READERS = 2
#: window reads whose pieces stream in while the current window is permuted
_WINDOWS_AHEAD = 1

#: reads one signed slice range (with failover): ``read(ticket, locations)``
ReadRange = Callable[[str, list[str]], Iterator[pa.RecordBatch]]


def _window_rows(
    window: Mapping[str, Any], batches: Sequence[pa.RecordBatch], *, seed: int, epoch: int
) -> pa.RecordBatch | None:
    keep_start, keep_stop = (int(x) for x in window["keep"])
    if keep_stop <= keep_start or not batches:
        return None
    return mix_window(
        batches,
        batches[0].schema,
        rows=int(window["rows"]),
        keep_start=keep_start,
        keep_stop=keep_stop,
        seed=seed,
        epoch=epoch,
        window=int(window["window"]),
    )


def read_window(
    window: Mapping[str, Any],
    pieces: Sequence[tuple[str, list[str]]],
    *,
    seed: int,
    epoch: int,
    read: ReadRange,
) -> pa.RecordBatch | None:
    """Read every piece of one window read (``window`` as in PROTOCOL.md: ``window``,
    ``rows``, ``keep``) and return its kept rows, permuted; None if it keeps none."""
    if len(pieces) > 1:  # the next piece's node gathers while this one is received
        with ThreadPoolExecutor(_PIECE_READERS, thread_name_prefix="icefeed-piece") as pool:
            parts = list(pool.map(lambda piece: list(read(*piece)), pieces))
    else:
        parts = [list(read(*piece)) for piece in pieces]
    batches = [batch for part in parts for batch in part]
    return _window_rows(window, batches, seed=seed, epoch=epoch)


def read_unit(
    answer: Mapping[str, Any],
    read: Callable[..., Iterator[pa.RecordBatch]],
    *,
    seed: int,
    epoch: int,
    position: int,
    unit: int,
) -> Iterator[pa.RecordBatch]:
    """Yield the batches of one leased unit (a ``lease`` answer): a slice range, or a MIX
    window's kept rows, permuted.

    Args:
        answer: the coordinator's ``lease`` answer (``ticket`` and ``locations``, or
            ``window`` and ``pieces``).
        read: the node reader, ``read(ticket, locations, position=..., unit=...)``.
        seed: the job's shuffle seed.
        epoch: the epoch.
        position: rows this consumer yielded so far (the chunking hint).
        unit: rows per unit of the consumer's batches (the chunking hint).
    """
    if "pieces" not in answer:
        yield from read(answer["ticket"], answer["locations"], position=position, unit=unit)
        return
    pieces = [(p["ticket"], list(p["locations"])) for p in answer["pieces"]]
    mixed = read_window(
        answer["window"], pieces, seed=seed, epoch=epoch, read=functools.partial(read, unit=1)
    )
    if mixed is not None:
        yield mixed


def _reads(
    endpoints: Sequence[flight.FlightEndpoint],
) -> Iterator[tuple[dict[str, Any], list[tuple[str, list[str]]]]]:
    """Endpoints grouped by the window read their ``app_metadata`` names, in order."""
    meta: dict[str, Any] | None = None
    group: list[tuple[str, list[str]]] = []
    for endpoint in endpoints:
        current = json.loads(endpoint.app_metadata)
        if meta is not None and current["read"] != meta["read"]:
            yield meta, group
            group = []
        meta = current
        locations = [loc.uri.decode() for loc in endpoint.locations]
        group.append((endpoint.ticket.ticket.decode("ascii"), locations))
    if meta is not None:
        yield meta, group


def read_static_windows(
    endpoints: Sequence[flight.FlightEndpoint], *, seed: int, epoch: int, read: ReadRange
) -> Iterator[pa.RecordBatch]:
    """Yield a static-mode MIX share, window read by window read, in order.

    The pieces of the next ``_WINDOWS_AHEAD`` reads stream in on a small pool while
    the current window is permuted (nodes gather and the network moves bytes while
    this thread permutes). Errors of a piece surface in order.
    """
    pool = ThreadPoolExecutor(_PIECE_READERS, thread_name_prefix="icefeed-piece")
    pending: deque[tuple[dict[str, Any], list[Future[list[pa.RecordBatch]]]]] = deque()
    reads = _reads(endpoints)

    def fetch(piece: tuple[str, list[str]]) -> list[pa.RecordBatch]:
        return list(read(*piece))

    def submit() -> None:
        nxt = next(reads, None)
        if nxt is not None:
            meta, pieces = nxt
            pending.append((meta, [pool.submit(fetch, piece) for piece in pieces]))

    try:
        for _ in range(1 + _WINDOWS_AHEAD):
            submit()
        while pending:
            meta, futures = pending.popleft()
            batches = [batch for future in futures for batch in future.result()]
            submit()
            out = _window_rows(meta, batches, seed=seed, epoch=epoch)
            if out is not None:
                yield out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def is_mixed(endpoints: Sequence[flight.FlightEndpoint]) -> bool:
    """Whether a static share is MIX window reads (endpoints carry window metadata)."""
    return bool(endpoints) and bool(endpoints[0].app_metadata)
