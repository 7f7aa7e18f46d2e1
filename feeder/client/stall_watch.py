"""The stall watch: cancels data-node reads that wait longer than ``stall_seconds``.

A gRPC read has no deadline of its own; a node that keeps its connection open but
sends nothing (hung, SIGSTOPped, partitioned without a reset) would block the
reader forever. One watch thread per client looks after every read it tracks.
"""

from __future__ import annotations

import threading
import time

import pyarrow.flight as flight

#: Default ``stall_seconds``: above the time a node takes to materialise a slice on failover.
DEFAULT_STALL_SECONDS = 60.0


class WatchedRead:
    """One node stream the :class:`StallWatch` looks after.

    The reader sets :attr:`waiting_since` while it blocks in a read (``None`` between
    reads, so time the caller spends on a training step never counts); the watch sets
    :attr:`stalled` and cancels the stream when the wait passes ``stall_seconds``.
    """

    __slots__ = ("reader", "stalled", "waiting_since")

    def __init__(self, reader: flight.FlightStreamReader) -> None:
        self.reader = reader
        self.waiting_since: float | None = None
        self.stalled = False


class StallWatch:
    """Cancels node reads blocked for more than ``stall_seconds`` (one thread per client).

    The thread runs only while reads are tracked and wakes every
    ``min(stall_seconds / 4, 0.5)`` seconds.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._reads: set[WatchedRead] = set()
        self._thread: threading.Thread | None = None

    def track(self, reader: flight.FlightStreamReader) -> WatchedRead:
        """Start watching ``reader``; starts the watch thread if it is not running.

        Args:
            reader: an open ``do_get`` stream.

        Returns:
            The handle whose ``waiting_since`` the reader sets around each read.
        """
        read = WatchedRead(reader)
        with self._lock:
            self._reads.add(read)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="icefeed-stall-watch", daemon=True
                )
                self._thread.start()
        return read

    def untrack(self, read: WatchedRead) -> None:
        """Stop watching ``read`` (the thread ends once nothing is tracked)."""
        with self._lock:
            self._reads.discard(read)

    def _run(self) -> None:
        interval = min(self.stall_seconds / 4, 0.5)
        while True:
            time.sleep(interval)
            now = time.monotonic()
            with self._lock:
                if not self._reads:
                    self._thread = None
                    return
                late = [
                    r
                    for r in self._reads
                    if r.waiting_since is not None and now - r.waiting_since > self.stall_seconds
                ]
                for read in late:
                    read.stalled = True
                    self._reads.discard(read)
            for read in late:
                read.reader.cancel()
