"""Static-mode read-ahead: later slice ranges stream in the background while one is consumed.

One Flight stream is the ceiling of one consumer; reading the next ranges (often
from another node) at the same time passes it. Off by default: on 2 cores it
measured slower (the ``client_stream_*_read_ahead`` benchmark cases).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

AHEAD_BATCHES = 4  # batches a read-ahead range may buffer
_END = object()

#: ``read(ticket, locations) -> batches`` of one slice range.
ReadRange = Callable[[str, list[str]], Iterator[pa.RecordBatch]]


def read_ahead(
    ranges: list[tuple[str, list[str]]], read: ReadRange, *, depth: int, join_timeout: float
) -> Iterator[pa.RecordBatch]:
    """Yield ranges in order while up to ``depth`` later ones stream in the background.

    Each background range buffers at most ``AHEAD_BATCHES`` batches; errors surface in
    order. A range opened ahead does not know the stream position it will start at,
    so ``read`` cuts its batches from its own start (see :mod:`feeder.protocol.chunking`).

    Args:
        ranges: ``(ticket, locations)`` of each slice range, in delivery order.
        read: reads one range (with failover).
        depth: how many ranges after the current one may be read concurrently.
        join_timeout: seconds to wait for each background thread when the caller stops.

    Yields:
        The ranges' record batches in order.

    Raises:
        Whatever ``read`` raises, when the consumer reaches that range.
    """
    stop = threading.Event()
    pending: deque[queue.Queue[Any]] = deque()
    threads: list[threading.Thread] = []

    def pump(ticket: str, locations: list[str], out: queue.Queue[Any]) -> None:
        item: Any
        try:
            for batch in read(ticket, locations):
                while not stop.is_set():
                    try:
                        out.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = _END
        except BaseException as exc:  # handed to the consumer, raised there in order
            item = exc
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def start(index: int) -> None:
        out: queue.Queue[Any] = queue.Queue(maxsize=AHEAD_BATCHES)
        thread = threading.Thread(
            target=pump, args=(*ranges[index], out), name="icefeed-read-ahead", daemon=True
        )
        thread.start()
        threads.append(thread)
        pending.append(out)

    following = 0
    try:
        while following < len(ranges) and len(pending) <= depth:
            start(following)
            following += 1
        while pending:
            out = pending.popleft()
            while True:
                item = out.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            if following < len(ranges):
                start(following)
                following += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=join_timeout)
