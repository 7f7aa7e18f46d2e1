"""A data node serving whole MIX windows in their final order (PROTOCOL.md, *Window reads*).

The node gathers and orders each window of the bundle
(:func:`feeder.protocol.window_gather.window_parts`; its columns on
:data:`ORDER_THREADS` threads) on a thread of its own, one window ahead of the one
gRPC is sending, so ordering the next window overlaps sending this one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from feeder.protocol.background import ahead
from feeder.protocol.chunking import Chunking
from feeder.protocol.tickets import TicketClaims
from feeder.protocol.window_gather import WindowSpec, window_parts

#: windows a node orders ahead of the one being sent
WINDOWS_AHEAD = 1
#: threads a node orders one window's columns on
ORDER_THREADS = 2


def ordered_windows(
    pieces: Sequence[tuple[pa.Table, TicketClaims]],
    specs: Sequence[WindowSpec],
    *,
    chunking: Chunking,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """Yield the windows' kept rows in order, each window ordered on a helper thread up
    to :data:`WINDOWS_AHEAD` windows ahead. Errors surface in order; closing the
    iterator stops the thread at its next window."""
    windows = window_parts(
        pieces, specs, chunking=chunking, batch_rows=batch_rows, threads=ORDER_THREADS
    )
    for parts in ahead(windows, depth=WINDOWS_AHEAD, name="icefeed-windows"):
        yield from parts
