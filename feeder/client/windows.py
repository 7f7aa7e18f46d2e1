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

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from feeder.client.failover import NodeReader
from feeder.client.piece_streams import Piece, PieceStreams
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

    def join(self, parts: Sequence[np.ndarray], item: np.dtype) -> np.ndarray:
        """``parts`` (arrays of ``item``) end to end, in this buffer (valid until the next
        call)."""
        if len(parts) == 1:
            return parts[0]
        nbytes = sum(len(p) for p in parts) * item.itemsize
        if len(self._buffer) < nbytes:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        joined = self._buffer[:nbytes].view(item)
        np.concatenate(parts, out=joined)
        return joined


def _permute_plain(
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
    item = _item(width)
    parts = [
        np.frombuffer(c.buffers()[1], dtype=item, count=c.offset + len(c))[c.offset :]
        for c in chunks
    ]
    values = scratch.join(parts, item)
    start, stop = keep
    head = len(units) * UNIT_ROWS  # output rows from here on are the window's tail rows
    rows = np.empty(0, dtype=item)
    if start < head:
        first, last = start // UNIT_ROWS, -(-min(stop, head) // UNIT_ROWS)
        blocks = values[:head].view(np.dtype(f"V{width * UNIT_ROWS}"))
        moved = np.empty(last - first, dtype=blocks.dtype)
        np.take(blocks, units[first:last], out=moved, mode="clip")  # no buffered copy
        rows = moved.view(item)[start - first * UNIT_ROWS : min(stop, head) - first * UNIT_ROWS]
    if stop > head:  # the window's tail rows follow the units in order (copied out of scratch)
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
        if _plain(chunks, field.type):
            arrays.append(_permute_plain(chunks, field.type, units, keep, scratch))
            continue
        if row_idx is None:
            perm = window_permutation(rows, seed=seed, epoch=epoch, window=window)
            row_idx = pa.array(perm[keep_start:keep_stop])
        arrays.append(pa.concat_arrays(chunks).take(row_idx))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _window_rows(
    window: Mapping[str, Any],
    batches: Sequence[pa.RecordBatch],
    *,
    seed: int,
    epoch: int,
    scratch: WindowScratch | None,
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
        scratch=scratch,
    )


def _pieces(window: Mapping[str, Any], pieces: Sequence[tuple[str, list[str]]]) -> list[Piece]:
    """The pieces of one window read with their row counts (``sizes``, PROTOCOL.md).

    Raises FeederError when the coordinator sent no ``sizes`` or sizes that do not add
    up to the window's rows.
    """
    sizes = window.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != len(pieces):
        raise FeederError(
            "the coordinator sent a MIX window without the rows of its pieces ('sizes'); "
            "upgrade the feeder to this client's version"
        )
    if sum(int(n) for n in sizes) != int(window["rows"]):
        raise FeederError(f"window {window['window']}: piece sizes do not add up to its rows")
    return [Piece(t, tuple(locs), int(n)) for (t, locs), n in zip(pieces, sizes, strict=True)]


def read_window(
    window: Mapping[str, Any],
    pieces: Sequence[tuple[str, list[str]]],
    *,
    seed: int,
    epoch: int,
    nodes: NodeReader,
    scratch: WindowScratch | None = None,
) -> pa.RecordBatch | None:
    """Read every piece of one window read (``window`` as in PROTOCOL.md: ``window``,
    ``rows``, ``keep``, ``sizes``) and return its kept rows, permuted; None if it keeps
    none. The pieces come as one bundled stream per data node; ``scratch`` as for
    :func:`mix_window`."""
    wanted = _pieces(window, pieces)
    streams = PieceStreams(wanted, nodes, rows_ahead=int(window["rows"]))
    try:
        batches = [batch for i in range(len(wanted)) for batch in streams.take(i)]
    finally:
        streams.close()
    return _window_rows(window, batches, seed=seed, epoch=epoch, scratch=scratch)


def read_unit(
    answer: Mapping[str, Any],
    nodes: NodeReader,
    *,
    seed: int,
    epoch: int,
    position: int,
    unit: int,
    scratch: WindowScratch | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the batches of one leased unit (a ``lease`` answer): a slice range, or a MIX
    window's kept rows, permuted.

    Args:
        answer: the coordinator's ``lease`` answer (``ticket`` and ``locations``, or
            ``window`` and ``pieces``).
        nodes: the client's node reader.
        seed: the job's shuffle seed.
        epoch: the epoch.
        position: rows this consumer yielded so far (the chunking hint).
        unit: rows per unit of the consumer's batches (the chunking hint).
        scratch: the consumer's join buffer for MIX windows (None: one per window).
    """
    if "pieces" not in answer:
        yield from nodes.read(answer["ticket"], answer["locations"], position=position, unit=unit)
        return
    pieces = [(p["ticket"], list(p["locations"])) for p in answer["pieces"]]
    mixed = read_window(
        answer["window"], pieces, seed=seed, epoch=epoch, nodes=nodes, scratch=scratch
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
    endpoints: Sequence[flight.FlightEndpoint], *, seed: int, epoch: int, nodes: NodeReader
) -> Iterator[pa.RecordBatch]:
    """Yield a static-mode MIX share, window read by window read, in order.

    Every piece of the share streams in on one bundled stream per data node
    (:class:`PieceStreams`), each node up to one window ahead of the window being
    permuted: nodes gather and the network moves bytes while this thread permutes.
    Errors of a piece surface in order.
    """
    reads = [(meta, _pieces(meta, group)) for meta, group in _reads(endpoints)]
    flat = [piece for _, pieces in reads for piece in pieces]
    ahead = max((int(meta["rows"]) for meta, _ in reads), default=1)
    streams = PieceStreams(flat, nodes, rows_ahead=ahead)
    scratch = WindowScratch()
    try:
        index = 0
        for meta, pieces in reads:
            batches = [b for i in range(index, index + len(pieces)) for b in streams.take(i)]
            index += len(pieces)
            out = _window_rows(meta, batches, seed=seed, epoch=epoch, scratch=scratch)
            if out is not None:
                yield out
    finally:
        streams.close()


def is_mixed(endpoints: Sequence[flight.FlightEndpoint]) -> bool:
    """Whether a static share is MIX window reads (endpoints carry window metadata)."""
    return bool(endpoints) and bool(endpoints[0].app_metadata)
