"""Many small slice ranges ("pieces") read as one stream per data node, ahead of the consumer.

A MIX epoch is read as windows, and a window as one piece of every slice
(:mod:`feeder.protocol.mix`): hundreds of ranges an epoch. One ``do_get`` per piece
costs a round trip and a cold start on the node each time, and leaves the node idle
between them. :class:`PieceStreams` instead groups the pieces by the node that will
serve them and reads each group as bundles of up to ``MAX_BUNDLE_TICKETS`` tickets
(one ``do_get`` each, PROTOCOL.md), on one thread per node, cutting the stream back
into pieces by their row counts. Each node runs at most ``rows_ahead`` rows ahead of
the consumer (gRPC flow control then holds the node back). If a node fails, the
pieces it had not finished are read one at a time with the reader's failover
(:meth:`feeder.client.failover.NodeReader.read`); a piece is handed over only once
complete, so every row arrives exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from feeder.client.failover import NodeReader
from feeder.client.flight_errors import RETRIABLE
from feeder.protocol.tickets import MAX_BUNDLE_TICKETS
from jobs.errors import FeederError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """One signed slice range, the nodes that serve it, and the rows it holds."""

    ticket: str
    locations: tuple[str, ...]
    rows: int


class PieceStreams:
    """Reads ``pieces`` on one thread per data node; :meth:`take` hands them over in any order.

    Args:
        pieces: the pieces, in the order the consumer will take them.
        reader: the client's node reader (connections, stall watch, failover).
        rows_ahead: how many rows of taken-not-yet pieces one node's thread may hold.
        bundle: tickets per ``do_get``.
    """

    def __init__(
        self,
        pieces: Sequence[Piece],
        reader: NodeReader,
        *,
        rows_ahead: int,
        bundle: int = MAX_BUNDLE_TICKETS,
    ) -> None:
        if not 1 <= bundle <= MAX_BUNDLE_TICKETS:
            raise ValueError(f"bundle {bundle} must be in [1, {MAX_BUNDLE_TICKETS}]")
        self._pieces = list(pieces)
        self._reader = reader
        self._rows_ahead = max(1, rows_ahead)
        self._bundle = bundle
        self._cond = threading.Condition()
        self._ready: dict[int, list[pa.RecordBatch] | BaseException] = {}
        self._held: dict[str, int] = {}  # rows fetched and not taken, per node
        self._group_of: dict[int, str] = {}
        self._closed = False
        groups: dict[str, list[int]] = {}
        for index, piece in enumerate(self._pieces):
            first = reader.order(list(piece.locations))[:1]
            location = first[0] if first else ""
            groups.setdefault(location, []).append(index)
            self._group_of[index] = location
        self._threads = [
            threading.Thread(
                target=self._run, args=(location, indices), name="icefeed-pieces", daemon=True
            )
            for location, indices in groups.items()
        ]
        for thread in self._threads:
            thread.start()

    def take(self, index: int) -> list[pa.RecordBatch]:
        """Return piece ``index``'s batches once complete (each piece once).

        Raises:
            AuthError, FeederError: as reading the piece did.
        """
        with self._cond:
            while index not in self._ready:
                if self._closed:
                    raise FeederError("piece streams were closed")
                self._cond.wait()
            got = self._ready.pop(index)
            if isinstance(got, BaseException):
                raise got
            self._held[self._group_of[index]] -= self._pieces[index].rows
            self._cond.notify_all()
        return got

    def close(self) -> None:
        """Stop every node thread (at its next batch) and drop what it holds."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()

    def _publish(
        self, location: str, index: int, got: list[pa.RecordBatch] | BaseException
    ) -> bool:
        """Hand piece ``index`` over; wait while the node holds ``rows_ahead`` rows.
        Returns False once closed."""
        with self._cond:
            if self._closed:
                return False
            self._ready[index] = got
            if not isinstance(got, BaseException):
                held = self._held.get(location, 0) + self._pieces[index].rows
                self._held[location] = held
            self._cond.notify_all()
            while self._held.get(location, 0) >= self._rows_ahead and not self._closed:
                self._cond.wait()
            return not self._closed

    def _run(self, location: str, indices: list[int]) -> None:
        progress = [0]  # pieces of ``indices`` handed over
        try:
            while location and progress[0] < len(indices) and not self._closed:
                chunk = indices[progress[0] : progress[0] + self._bundle]
                self._read_bundle(location, chunk, progress)
        except RETRIABLE as exc:  # the node failed: the rest fails over one range at a time
            log.debug("bundle from %s failed: %s", location, exc)
        except BaseException as exc:  # handed to the consumer, raised by take()
            self._publish(location, indices[progress[0]], exc)
            return
        for index in indices[progress[0] :]:
            piece = self._pieces[index]
            try:
                batches = list(self._reader.read(piece.ticket, list(piece.locations), unit=1))
                got: list[pa.RecordBatch] | BaseException = _checked(batches, piece.rows)
            except BaseException as exc:
                got = exc
            if not self._publish(location, index, got) or isinstance(got, BaseException):
                return

    def _read_bundle(self, location: str, chunk: list[int], progress: list[int]) -> None:
        """Read ``chunk``'s pieces in one ``do_get``, handing each over once complete
        (``progress[0]`` counts them)."""
        sizes = [self._pieces[i].rows for i in chunk]
        k, need = 0, sizes[0]
        parts: list[pa.RecordBatch] = []

        def complete() -> bool:  # hand over every piece that is whole; False once closed
            nonlocal k, need, parts
            while need == 0 and k < len(chunk):
                if not self._publish(location, chunk[k], parts):
                    return False
                progress[0] += 1
                k, parts = k + 1, []
                need = sizes[k] if k < len(chunk) else 0
            return True

        for batch in self._reader.read_bundle(location, [self._pieces[i].ticket for i in chunk]):
            offset = 0
            while complete() and offset < batch.num_rows:
                if k >= len(chunk):
                    raise FeederError(f"data node {location} sent more rows than a bundle holds")
                size = min(need, batch.num_rows - offset)
                parts.append(batch.slice(offset, size))
                offset, need = offset + size, need - size
            if self._closed:
                return
        if complete() and k < len(chunk):
            raise FeederError(
                f"data node {location} ended a bundle after {k} of {len(chunk)} ranges"
            )


def _checked(batches: list[pa.RecordBatch], rows: int) -> list[pa.RecordBatch]:
    got = sum(b.num_rows for b in batches)
    if got != rows:
        raise FeederError(f"a slice range holds {got} rows, its plan says {rows}")
    return batches
