"""Static-mode read-ahead: later slice ranges stream in the background while one is consumed.

One Flight stream is the ceiling of one consumer; reading the next ranges (often
from another node) at the same time passes it. Off by default: on 2 cores it
measured slower (the ``client_stream_*_read_ahead`` benchmark cases).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import pyarrow as pa

from feeder.protocol.background import ahead

AHEAD_BATCHES = 4  # batches a read-ahead range may buffer

#: ``read(ticket, locations) -> batches`` of one slice range.
ReadRange = Callable[[str, list[str]], Iterator[pa.RecordBatch]]


def read_ahead(
    ranges: list[tuple[str, list[str]]], read: ReadRange, *, depth: int
) -> Iterator[pa.RecordBatch]:
    """Yield ranges in order while up to ``depth`` later ones stream in the background.

    Each background range buffers at most ``AHEAD_BATCHES`` batches; errors surface in
    order (each range on a thread of its own, :func:`feeder.protocol.background.ahead`;
    stopping closes them, each at its next batch). A range opened ahead does not know the
    stream position it will start at, so ``read`` cuts its batches from its own start (see
    :mod:`feeder.protocol.chunking`).

    Args:
        ranges: ``(ticket, locations)`` of each slice range, in delivery order.
        read: reads one range (with failover).
        depth: how many ranges after the current one may be read concurrently.

    Yields:
        The ranges' record batches in order.

    Raises:
        Whatever ``read`` raises, when the consumer reaches that range.
    """
    pending: deque[Iterator[pa.RecordBatch]] = deque()

    def start(index: int) -> None:
        batches = read(*ranges[index])
        pending.append(ahead(batches, depth=AHEAD_BATCHES, name="icefeed-read-ahead"))

    following = 0
    try:
        while following < len(ranges) and len(pending) <= depth:
            start(following)
            following += 1
        while pending:
            yield from pending[0]
            pending.popleft()
            if following < len(ranges):
                start(following)
                following += 1
    finally:
        for batches in pending:  # stop the threads of ranges not (fully) read
            close = getattr(batches, "close", None)
            if close is not None:
                close()
