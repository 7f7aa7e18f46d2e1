"""A data node serving whole MIX windows in their final order (PROTOCOL.md, *Window reads*).

The node gathers and orders each window of the bundle
(:func:`feeder.protocol.window_gather.window_parts`) on a thread of its own, one
window ahead of the one gRPC is sending, so ordering the next window overlaps
sending this one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import pyarrow as pa

from feeder.protocol.chunking import Chunking
from feeder.protocol.tickets import TicketClaims
from feeder.protocol.window_gather import WindowSpec, window_parts

#: windows a node orders ahead of the one being sent
WINDOWS_AHEAD = 1
_DONE = object()


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
    ready: queue.Queue[object] = queue.Queue(maxsize=WINDOWS_AHEAD)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for parts in window_parts(pieces, specs, chunking=chunking, batch_rows=batch_rows):
                if not put(parts):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the stream, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="icefeed-windows", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item  # type: ignore[misc]
    finally:
        stop.set()
