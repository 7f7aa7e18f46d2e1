"""Reading slice ranges from data nodes, with failover at the rows already delivered.

When a data-node stream breaks (or stalls for ``stall_seconds``, see
:mod:`feeder.client.stall_watch`), the reader asks the coordinator to ``resume``
the ticket at the rows delivered (a fresh ticket for the rest, with the live
locations) and reads on from the next node, for up to ``retry_seconds`` (time the
coordinator keeps a ``resume`` waiting, e.g. while it restarts, not counted).
Locations that failed recently are tried last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from feeder.client.flight_errors import REFUSED, RETRIABLE, clean, final_error
from feeder.client.local_reads import LocalReads
from feeder.client.stall_watch import StallWatch
from feeder.protocol.auth import connect
from feeder.protocol.chunking import Chunking
from feeder.protocol.config import TLSConfig
from feeder.protocol.tickets import join_bundle
from feeder.protocol.window_gather import WindowSpec, is_marked, windows_header
from jobs.errors import AuthError, FeederError

log = logging.getLogger(__name__)

SUSPECT_SECONDS = 30.0  # a location that failed is tried last for this long
#: pyarrow's error for a call on a FlightClient closed under the call
CLOSED = "FlightClient is closed"

#: ``resume(ticket, delivered) -> (ticket, locations)``: the coordinator's fresh ticket
#: for the rows of ``ticket`` after the first ``delivered``.
Resume = Callable[[str, int], tuple[str, list[str]]]
#: ``options(timeout, chunks, windows)``: the call options of one data-node call.
Options = Callable[[float | None, Chunking | None, str | None], flight.FlightCallOptions]


class WindowsUnsupported(FeederError):
    """A data node that predates whole-window reads (protocol 5) served plain ranges."""


class NodeReader:
    """Reads tickets from data nodes, keeping one connection per location.

    Args:
        options: builds the call options (token, job, chunking hint) of a node call.
        resume: asks the coordinator for the rest of a ticket after a failure.
        tls: TLS settings for ``grpc+tls://`` locations.
        retry_seconds: how long one slice range may keep failing over.
        stall_seconds: how long a node may send nothing while the reader waits.
        local: reads co-located nodes' cache files without gRPC (None: Flight only;
            :mod:`feeder.client.local_reads`).
    """

    def __init__(
        self,
        *,
        options: Options,
        resume: Resume,
        tls: TLSConfig | None,
        retry_seconds: float,
        stall_seconds: float,
        local: LocalReads | None = None,
    ) -> None:
        self._options = options
        self._local = local
        self._rows = {"rows_local": 0, "rows_flight": 0}
        self._resume = resume
        self._tls = tls
        self.retry_seconds = retry_seconds
        self.stall_seconds = stall_seconds
        self._watch = StallWatch(stall_seconds)
        self._lock = threading.Lock()
        self._nodes: dict[str, flight.FlightClient] = {}
        self._suspects: dict[str, float] = {}  # location -> when it last failed

    def close(self) -> None:
        """Close every node connection (the next read opens new ones)."""
        with self._lock:
            clients = list(self._nodes.values())
            self._nodes.clear()
        for client in clients:
            client.close()

    def read_counts(self) -> dict[str, int]:
        """Rows read so far from co-located nodes' cache files and over Flight."""
        with self._lock:
            return dict(self._rows)

    def _count(self, key: str, rows: int) -> None:
        with self._lock:
            self._rows[key] += rows

    def order(self, locations: list[str]) -> list[str]:
        """Return ``locations`` with those that failed in the last ``SUSPECT_SECONDS`` last."""
        now = time.monotonic()
        with self._lock:
            recent = {loc for loc, at in self._suspects.items() if now - at < SUSPECT_SECONDS}
        return [x for x in locations if x not in recent] + [x for x in locations if x in recent]

    def _node_client(self, location: str) -> flight.FlightClient:
        with self._lock:
            client = self._nodes.get(location)
            if client is None:
                client = self._nodes[location] = connect(location, tls=self._tls)
            return client

    def _drop_node(self, location: str, *, suspect: bool = True) -> None:
        """Forget ``location``'s connection (the next read opens a new one).

        Not closed here: a sibling read (MIX reads a window's pieces on parallel
        threads) may still hold it; it closes when its last user lets go.
        """
        with self._lock:
            if suspect:
                self._suspects[location] = time.monotonic()
            self._nodes.pop(location, None)

    def read(
        self, ticket: str, locations: list[str], *, position: int = 0, unit: int = 1
    ) -> Iterator[pa.RecordBatch]:
        """Yield the rows of one ticket, failing over to other nodes at the rows delivered.

        Args:
            ticket: the signed ticket of a slice range.
            locations: the data nodes that can serve it, in preference order.
            position: rows the stream yielded before this ticket; with ``unit`` (the
                consumer's batch size) it tells each node where to cut batches, so the
                consumer's batches do not straddle them (:mod:`feeder.protocol.chunking`).
            unit: the consumer's batch size.

        Yields:
            The range's record batches, each row once.

        Raises:
            AuthError: a node refused the ticket.
            FeederError: a node rejected the ticket, or no node could serve the range
                for ``retry_seconds``.
        """
        deadline: float | None = None
        delay = 0.05
        last: BaseException | None = None
        while True:
            delivered = 0
            for location in self.order(locations):
                try:
                    chunks = Chunking.at(position + delivered, unit)
                    batches = _final_errors(self._node_batches(location, ticket, chunks), location)
                    for batch in batches:
                        if batch.num_rows == 0:
                            continue
                        delivered += batch.num_rows
                        yield batch
                    return
                except REFUSED as exc:
                    raise AuthError(f"data node {location} refused a ticket: {clean(exc)}") from exc
                except pa.ArrowInvalid as exc:
                    if CLOSED not in str(exc):
                        raise FeederError(f"data node {location}: {clean(exc)}") from exc
                    last = exc  # closed under this read (``close``): open it again
                    self._drop_node(location, suspect=False)
                    if delivered:
                        break
                except RETRIABLE as exc:
                    last = exc
                    log.warning(
                        "data node %s failed after %d rows of a range (%s); failing over",
                        location,
                        delivered,
                        clean(exc)[:200],
                    )
                    self._drop_node(location)
                    if delivered:
                        break
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.retry_seconds
            if now > deadline:
                raise FeederError(
                    f"no data node could serve a slice range for {self.retry_seconds:.0f}s; "
                    f"last error: {clean(last) if last else 'no live location'}"
                )
            if not delivered:
                time.sleep(delay)  # retry backoff while a replacement node starts
                delay = min(delay * 2, 1.0)
            # progress of a lease keeps counting from the unit's start across resumes
            asked = time.monotonic()
            ticket, locations = self._resume(ticket, delivered)
            # a coordinator that keeps the resume waiting (a driver restart: bounded by
            # the client's restart_seconds) does not use up the range's failover time
            deadline += time.monotonic() - asked
            position += delivered  # the new ticket starts where the delivered rows end

    def read_bundle(self, location: str, tickets: list[str]) -> Iterator[pa.RecordBatch]:
        """Yield the rows of ``tickets`` (at most MAX_BUNDLE_TICKETS) from one node in one
        ``do_get``, in order — no failover: a caller that gets a RETRIABLE error reads the
        rest with :meth:`read`.

        Raises:
            AuthError: the node refused a ticket.
            FeederError: the node rejected a ticket.
        """
        return self._one_call(
            location,
            tickets,
            None,
            None,
            f"a bundle of {len(tickets)} ranges",
            "failing over range by range",
        )

    def read_windows(
        self, location: str, tickets: list[str], windows: list[WindowSpec], chunks: Chunking
    ) -> Iterator[pa.RecordBatch]:
        """Yield whole MIX windows' kept rows, ordered by the node ``location`` that holds
        every piece (``tickets``: the windows' pieces in order, at most
        MAX_BUNDLE_TICKETS), in one ``do_get`` — no failover: a caller that gets a
        RETRIABLE error or :class:`WindowsUnsupported` reads the rest another way.

        Raises:
            AuthError: the node refused a ticket.
            FeederError: the node rejected a ticket or the windows.
        """
        return self._one_call(
            location,
            tickets,
            chunks,
            windows,
            f"a read of {len(windows)} windows",
            "reading the rest as pieces",
        )

    def _one_call(
        self,
        location: str,
        tickets: list[str],
        chunks: Chunking | None,
        windows: list[WindowSpec] | None,
        what: str,
        then: str,
    ) -> Iterator[pa.RecordBatch]:
        """One ``do_get`` of a bundle, no failover (``what`` and ``then`` name it and what
        the caller does after a RETRIABLE error, for the log)."""
        delivered = 0
        try:
            batches = self._node_batches(location, join_bundle(tickets), chunks, windows)
            for batch in _final_errors(batches, location):
                delivered += batch.num_rows
                yield batch
        except REFUSED as exc:
            raise AuthError(f"data node {location} refused a ticket: {clean(exc)}") from exc
        except pa.ArrowInvalid as exc:
            raise FeederError(f"data node {location}: {clean(exc)}") from exc
        except RETRIABLE as exc:
            log.warning(
                "data node %s failed after %d rows of %s (%s); %s",
                location,
                delivered,
                what,
                clean(exc)[:200],
                then,
            )
            self._drop_node(location)
            raise

    def _node_batches(
        self,
        location: str,
        ticket: str,
        chunks: Chunking | None = None,
        windows: list[WindowSpec] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield one ``do_get``'s batches, read in the caller's thread.

        Raises FlightTimedOutError when the node sends nothing for ``stall_seconds``
        while the caller waits: a gRPC read has no deadline of its own, and a node
        that keeps its connection open (e.g. SIGSTOPped) would block it forever.
        ``do_get`` (which waits for the stream's schema) runs on a helper thread the
        caller waits for; the reads themselves run in the caller's thread (no
        hand-off per batch) under the :class:`StallWatch`, which cancels a read
        blocked for longer than ``stall_seconds``. Time the caller spends between
        reads (a training step) never counts.

        A co-located node's rows are read from its cache files instead, when it allows.
        """
        local = (
            self._local.open(location, ticket, chunks, windows) if self._local is not None else None
        )
        if local is not None:
            for batch in local:
                self._count("rows_local", batch.num_rows)
                yield batch
            return
        header = windows_header(windows) if windows is not None else None
        reader = self._open_stream(location, ticket, chunks, header)
        if windows is not None and not is_marked(reader.schema):
            reader.cancel()
            raise WindowsUnsupported(f"data node {location} does not serve whole windows")
        read = self._watch.track(reader)
        finished = False
        try:
            while True:
                read.waiting_since = time.monotonic()
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    finished = True
                    return
                except Exception:  # a cancelled read may surface as any Arrow/Flight error
                    if read.stalled:
                        raise self._stalled(location) from None
                    raise
                finally:
                    read.waiting_since = None
                if read.stalled:  # cancelled just as the batch arrived
                    raise self._stalled(location)
                self._count("rows_flight", chunk.data.num_rows)
                yield chunk.data
        finally:
            self._watch.untrack(read)
            if not finished:  # stalled, failed, or the caller stopped early: end the call
                reader.cancel()

    def _stalled(self, location: str) -> flight.FlightTimedOutError:
        return flight.FlightTimedOutError(
            f"data node {location} sent nothing for {self.stall_seconds:g}s "
            "(stall_seconds); treating it as lost"
        )

    def _open_stream(
        self,
        location: str,
        ticket: str,
        chunks: Chunking | None = None,
        windows: str | None = None,
    ) -> flight.FlightStreamReader:
        """``do_get`` on a helper thread; FlightTimedOutError if it takes ``stall_seconds``."""
        client = self._node_client(location)
        done = threading.Event()
        lock = threading.Lock()
        result: list[Any] = []
        abandoned = False

        def start() -> None:
            nonlocal abandoned
            item: Any
            try:
                item = client.do_get(
                    flight.Ticket(ticket.encode("ascii")), self._options(None, chunks, windows)
                )
            except BaseException as exc:  # handed to the caller, raised there
                item = exc
            with lock:
                if abandoned:  # the caller gave up while the stream was starting
                    if isinstance(item, flight.FlightStreamReader):
                        item.cancel()
                    return
                result.append(item)
            done.set()

        threading.Thread(target=start, name="icefeed-node-open", daemon=True).start()
        if not done.wait(self.stall_seconds):
            with lock:
                if not result:
                    abandoned = True
                    raise self._stalled(location)
        item = result[0]
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]


def _final_errors(batches: Iterator[pa.RecordBatch], location: str) -> Iterator[pa.RecordBatch]:
    """Pass ``batches`` through, raising a node's final coded refusal as an icefeed error."""
    try:
        yield from batches
    except flight.FlightError as exc:
        final = final_error(exc, f"data node {location}", internal_is_final=False)
        if final is not None:
            raise final from exc
        raise
