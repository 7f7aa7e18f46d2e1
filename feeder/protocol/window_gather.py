"""Whole MIX windows served in their final order by whoever holds every piece (protocol 5).

A MIX window is one piece of every slice (:mod:`feeder.protocol.mix`). When one data
node holds all of a window's pieces, the consumer asks it for the window itself: a
``do_get`` bundle of the pieces' signed tickets, window after window, with the
``x-icefeed-windows`` header saying where each window's pieces start in the bundle
and which rows of its order to keep. The node gathers the pieces' blocks into one
buffer per column and applies the window order (:func:`feeder.protocol.window_order.mix_window`)
itself, so the consumer receives the rows in their final order and copies nothing:
the same rows, in the same order, as the consumer ordering the pieces itself.

The header only groups and trims what the signed tickets already allow (like the
chunking hint, it moves no row outside them), so it is not signed. Pure pyarrow and
numpy: the data node and a co-located consumer (local reads) run the same code.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from feeder.protocol.blocks import GatherScratch, cached_block_order, gather_column
from feeder.protocol.chunking import Chunking
from feeder.protocol.mix import block_runs, window_permutation, window_units
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import MAX_BUNDLE_TICKETS, TicketClaims
from feeder.protocol.window_order import WindowScratch, permute_plain, plain
from jobs.errors import FeederError

#: the ``do_get`` header naming a bundle's windows (:func:`windows_header`)
WINDOWS_HEADER = "x-icefeed-windows"
#: schema metadata of a window stream: tells the consumer the node ordered the windows
#: (a node that predates window reads ignores the header and serves plain ranges)
WINDOWS_MARK = (b"icefeed.windows", b"1")
_MAX_WORD = 2**32 - 1
_MAX_ROWS = 2**31


@dataclass(frozen=True)
class WindowSpec:
    """One window of a bundle: its next ``pieces`` tickets (in slice order) are window
    ``window``'s pieces; rows ``[keep_start, keep_stop)`` of its order are served."""

    window: int
    pieces: int
    keep_start: int
    keep_stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.window < _MAX_WORD or not 1 <= self.pieces <= MAX_BUNDLE_TICKETS:
            raise FeederError(f"window {self.window} with {self.pieces} pieces is out of range")
        if not 0 <= self.keep_start <= self.keep_stop < _MAX_ROWS:
            raise FeederError(f"keep [{self.keep_start}, {self.keep_stop}) is not a row range")


def marked(schema: pa.Schema) -> pa.Schema:
    """``schema`` with :data:`WINDOWS_MARK` in its metadata."""
    return schema.with_metadata({**(schema.metadata or {}), WINDOWS_MARK[0]: WINDOWS_MARK[1]})


def is_marked(schema: pa.Schema) -> bool:
    """Whether a stream's schema says its node ordered the windows."""
    return (schema.metadata or {}).get(WINDOWS_MARK[0]) == WINDOWS_MARK[1]


def windows_header(specs: Sequence[WindowSpec]) -> str:
    """The :data:`WINDOWS_HEADER` value: ``window:pieces:keep_start:keep_stop`` per window,
    joined by ``;``."""
    return ";".join(f"{s.window}:{s.pieces}:{s.keep_start}:{s.keep_stop}" for s in specs)


def parse_windows(value: str | None, tickets: int) -> list[WindowSpec] | None:
    """The windows of a :data:`WINDOWS_HEADER` value for a bundle of ``tickets`` tickets
    (None: no header, the bundle is plain ranges).

    Raises FeederError naming the header for a malformed value or one whose windows do
    not take exactly the bundle's tickets.
    """
    if value is None:
        return None
    shown = value[:60]
    parts = value.split(";")
    if len(value) > 64 * MAX_BUNDLE_TICKETS or not 1 <= len(parts) <= tickets:
        raise FeederError(f"{WINDOWS_HEADER} header {shown!r} does not fit a bundle of {tickets}")
    specs: list[WindowSpec] = []
    for part in parts:
        fields = part.split(":")
        if len(fields) != 4 or not all(f.isascii() and f.isdigit() and len(f) < 12 for f in fields):
            raise FeederError(
                f"{WINDOWS_HEADER} header {shown!r}: each window is "
                "'window:pieces:keep_start:keep_stop' (non-negative integers)"
            )
        try:
            specs.append(WindowSpec(*(int(f) for f in fields)))
        except FeederError as exc:
            raise FeederError(f"{WINDOWS_HEADER} header {shown!r}: {exc}") from None
    if sum(s.pieces for s in specs) != tickets:
        raise FeederError(
            f"{WINDOWS_HEADER} header {shown!r} names {sum(s.pieces for s in specs)} pieces, "
            f"the bundle holds {tickets} tickets"
        )
    return specs


def _check_pieces(claims: Sequence[TicketClaims], spec: WindowSpec) -> int:
    """Return the window's rows; FeederError unless every ticket is a MIX range of one
    epoch, seed and block size, and the kept rows lie inside the window."""
    first = claims[0]
    for c in claims:
        if c.shuffle is not Shuffle.MIX:
            raise FeederError(f"window {spec.window}: a piece's ticket is not a MIX range")
        if (c.seed, c.epoch, c.block_rows) != (first.seed, first.epoch, first.block_rows):
            raise FeederError(f"window {spec.window}: its pieces name different epoch orders")
    rows = sum(c.stop - c.start for c in claims)
    if spec.keep_stop > rows:
        raise FeederError(
            f"window {spec.window}: keep [{spec.keep_start}, {spec.keep_stop}) is outside "
            f"its {rows} rows"
        )
    return rows


def window_batch(
    pieces: Sequence[tuple[pa.Table, TicketClaims]],
    spec: WindowSpec,
    *,
    gather: GatherScratch,
    threads: int = 1,
) -> pa.RecordBatch:
    """Return the kept rows of one window, in its order, from its pieces' slices (each
    ``(table, claims)``: the whole slice, projected, and its verified ticket), the
    columns ordered on up to ``threads`` threads (numpy moves rows without the GIL).

    The batch owns its buffers: the same rows and order as
    :func:`feeder.protocol.window_order.mix_window` over the pieces' block streams.
    Raises FeederError as :func:`_check_pieces`.
    """
    claims = [c for _, c in pieces]
    rows = _check_pieces(claims, spec)
    first = claims[0]
    runs = [
        (
            table,
            block_runs(
                table.num_rows,
                c.start,
                c.stop,
                block_rows=c.block_rows,
                seed=c.seed,
                epoch=c.epoch,
                slice_id=c.slice_id,
                order=cached_block_order(table.num_rows, c.block_rows, c.seed, c.epoch, c.slice_id),
            ),
        )
        for table, c in pieces
    ]
    schema = pieces[0][0].schema
    units = window_units(rows, seed=first.seed, epoch=first.epoch, window=spec.window)
    units = units.astype(np.intp)
    keep = (spec.keep_start, spec.keep_stop)
    perm: list[pa.Array] = []
    lock = threading.Lock()

    def kept_rows() -> pa.Array:  # the kept rows' places in the pieces, for Arrow take
        with lock:
            if not perm:
                order = window_permutation(
                    rows, seed=first.seed, epoch=first.epoch, window=spec.window
                )
                perm.append(pa.array(order[keep[0] : keep[1]]))
            return perm[0]

    def column(i: int) -> pa.Array:
        joined = gather_column(runs, i, gather)
        if plain([joined], joined.type):
            return permute_plain([joined], joined.type, units, keep, WindowScratch())
        return joined.take(kept_rows())

    if threads > 1 and len(schema) > 1:
        arrays = list(_pool(threads).map(column, range(len(schema))))
    else:
        arrays = [column(i) for i in range(len(schema))]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool ordering windows' columns (one per thread count)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="icefeed-order")


def window_parts(
    pieces: Sequence[tuple[pa.Table, TicketClaims]],
    specs: Sequence[WindowSpec],
    *,
    chunking: Chunking,
    batch_rows: int,
    threads: int = 1,
) -> Iterator[list[pa.RecordBatch]]:
    """Yield the kept rows of ``specs``' windows, one list of batches per window, cut on
    ``chunking``'s grid (which runs on across windows) into batches of at most
    ``batch_rows`` rows.

    ``pieces`` are the bundle's tickets with their slices, in bundle order. Raises
    FeederError as :func:`window_batch`, or if ``specs`` do not take every piece.
    """
    if sum(s.pieces for s in specs) != len(pieces):
        raise FeederError(f"{len(specs)} windows do not take the bundle's {len(pieces)} pieces")
    gather = GatherScratch()
    index = offset = 0
    for spec in specs:
        batch = window_batch(
            pieces[index : index + spec.pieces], spec, gather=gather, threads=threads
        )
        index += spec.pieces
        grid = Chunking(lead=(chunking.lead - offset) % chunking.unit, unit=chunking.unit)
        parts, start = [], 0
        for size in grid.sizes(batch.num_rows, batch_rows):
            parts.append(batch.slice(start, size))
            start += size
        offset += batch.num_rows
        yield parts


def window_stream(
    pieces: Sequence[tuple[pa.Table, TicketClaims]],
    specs: Sequence[WindowSpec],
    *,
    chunking: Chunking,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """:func:`window_parts`, batch after batch."""
    for parts in window_parts(pieces, specs, chunking=chunking, batch_rows=batch_rows):
        yield from parts
