"""The consumer's half of the MIX shuffle: read each window in its final order (PROTOCOL.md).

A MIX window is one piece of every slice. When one data node is the first choice
for every piece of a window (always with one node, and with host-local windows),
the consumer asks that node for the whole window (:meth:`NodeReader.read_windows`,
many windows a ``do_get``): the node gathers and orders it
(:mod:`feeder.protocol.window_gather`), and the rows arrive in their final order —
the consumer copies nothing. Otherwise — the pieces live on several nodes, a node
predates window reads, or it fails mid-window — the consumer reads the pieces (one
bundled stream per node, :class:`PieceStreams`, with failover) and orders the
window itself (:func:`feeder.protocol.window_order.mix_window`). A node's window
rows are handed on as they arrive; when it fails mid-window, the rest of that window
is ordered here from its pieces starting after the rows handed on (the window order
is fixed, so those are exactly the rows not delivered): no row twice, none lost.
Pieces the consumer orders itself are used only once complete. Pure pyarrow and
numpy: no torch, no pyspark.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from feeder.client.failover import NodeReader, WindowsUnsupported
from feeder.client.flight_errors import RETRIABLE
from feeder.client.piece_streams import Piece, PieceStreams
from feeder.protocol.background import ahead
from feeder.protocol.chunking import Chunking
from feeder.protocol.tickets import MAX_BUNDLE_TICKETS
from feeder.protocol.window_gather import WindowSpec
from feeder.protocol.window_order import WindowScratch, mix_window
from jobs.errors import FeederError

log = logging.getLogger(__name__)

#: windows read off the wire ahead of the rows being handed on
WINDOWS_AHEAD = 1

__all__ = ["WindowScratch", "is_mixed", "mix_window", "read_static_windows", "read_unit"]

#: a window read: its metadata (PROTOCOL.md: ``window``, ``rows``, ``keep``, ``sizes``)
#: and its pieces
Read = tuple[Mapping[str, Any], list[Piece]]


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


@dataclass
class _Segment:
    """Consecutive window reads ordered the same way: by the node ``location`` (every
    piece's first choice; at most MAX_BUNDLE_TICKETS pieces in all), or by the consumer
    (``location`` None)."""

    location: str | None
    reads: list[Read]
    tickets: int


def _first_choice(pieces: Sequence[Piece], nodes: NodeReader) -> str | None:
    """The node every piece would be read from first, if it is one and the same."""
    firsts = {next(iter(nodes.order(list(p.locations))), "") for p in pieces}
    only = firsts.pop() if len(firsts) == 1 else ""
    return only or None


def _segments(reads: Sequence[Read], nodes: NodeReader) -> Iterator[_Segment]:
    """``reads`` cut into :class:`_Segment` s, in order (lazily: each read's first choice
    is looked at when its segment is due, after earlier failures)."""
    current: _Segment | None = None
    for meta, pieces in reads:
        location = _first_choice(pieces, nodes) if len(pieces) <= MAX_BUNDLE_TICKETS else None
        fits = current is not None and (
            location is None or current.tickets + len(pieces) <= MAX_BUNDLE_TICKETS
        )
        if current is not None and current.location == location and fits:
            current.reads.append((meta, pieces))
            current.tickets += len(pieces)
            continue
        if current is not None:
            yield current
        current = _Segment(location, [(meta, pieces)], len(pieces))
    if current is not None:
        yield current


def _spec(meta: Mapping[str, Any], pieces: int) -> WindowSpec:
    keep_start, keep_stop = (int(x) for x in meta["keep"])
    return WindowSpec(int(meta["window"]), pieces, keep_start, keep_stop)


class _NodeWindows:
    """Reads window after window ordered by one node; ``done`` counts the windows handed
    on whole and ``partial`` the rows handed on of the next one."""

    def __init__(self, location: str, reads: Sequence[Read], nodes: NodeReader) -> None:
        self.location = location
        self.reads = list(reads)
        self.nodes = nodes
        self.done = 0
        self.partial = 0

    def batches(self, chunks: Chunking) -> Iterator[pa.RecordBatch]:
        """Yield the windows' kept rows as they arrive, read off the wire by a thread of
        its own up to about :data:`WINDOWS_AHEAD` windows ahead (so the transfer of the
        next window overlaps the caller's use of this one); return quietly (``done`` <
        all) when the node fails or predates window reads, so the caller reads the rest
        another way — the rest of a window begun from the row after ``partial`` (the
        window order is fixed: those are exactly the rows not handed on).

        Raises:
            AuthError, FeederError: the node refused the tickets or sent rows that do not
                fit the windows.
        """
        largest = max((s.keep_stop - s.keep_start for s in self._specs()), default=1)
        rows_ahead = ahead(
            self._windows(chunks),
            depth=WINDOWS_AHEAD * largest,  # rows, plus one batch
            name="icefeed-window",
            weight=lambda item: item[0].num_rows if item is not None else 0,
        )
        for item in rows_ahead:
            if item is None:  # the node failed: the rest is read as pieces
                return
            batch, completes = item
            if completes:
                self.done, self.partial = self.done + 1, 0
            else:
                self.partial += batch.num_rows
            yield batch

    def _specs(self) -> list[WindowSpec]:
        return [_spec(meta, len(pieces)) for meta, pieces in self.reads]

    def _windows(self, chunks: Chunking) -> Iterator[tuple[pa.RecordBatch, bool] | None]:
        """Each batch as it arrives, with whether it completes its window; None last if
        the node failed (logged)."""
        specs = self._specs()
        wants = [s.keep_stop - s.keep_start for s in specs]
        tickets = [p.ticket for _, pieces in self.reads for p in pieces]
        got = complete = 0
        try:
            for batch in self.nodes.read_windows(self.location, tickets, specs, chunks):
                if batch.num_rows == 0:
                    continue
                if complete == len(wants) or got + batch.num_rows > wants[complete]:
                    raise FeederError(
                        f"data node {self.location} sent more rows than window "
                        f"{specs[min(complete, len(specs) - 1)].window} keeps"
                    )
                got += batch.num_rows
                completes = got == wants[complete]  # a window read keeps at least one row
                if completes:
                    got, complete = 0, complete + 1
                yield batch, completes
            if complete < len(wants):
                raise FeederError(
                    f"data node {self.location} ended a window read after {complete} of "
                    f"{len(wants)} windows"
                )
        except (WindowsUnsupported, *RETRIABLE) as exc:
            log.info(
                "window read from %s stopped after %d of %d windows and %d rows of the next "
                "(%s); reading the rest as pieces",
                self.location,
                complete,
                len(wants),
                got,
                exc,
            )
            yield None

    def rest(self) -> list[Read]:
        """The reads not handed on yet, the first one's kept rows starting after the
        ``partial`` rows already handed on."""
        rest = self.reads[self.done :]
        if rest and self.partial:
            meta, pieces = rest[0]
            keep_start, keep_stop = (int(x) for x in meta["keep"])
            moved = {**meta, "keep": [keep_start + self.partial, keep_stop]}
            rest = [(moved, pieces), *rest[1:]]
        return rest


def _consumer_ordered(
    reads: Sequence[Read], nodes: NodeReader, *, seed: int, epoch: int, scratch: WindowScratch
) -> Iterator[pa.RecordBatch]:
    """Yield ``reads``' kept rows, ordered here: every piece of the reads streams in on one
    bundled stream per data node (:class:`PieceStreams`), each node up to one window
    ahead of the window being ordered. Errors of a piece surface in order."""
    flat = [piece for _, pieces in reads for piece in pieces]
    ahead = max((int(meta["rows"]) for meta, _ in reads), default=1)
    streams = PieceStreams(flat, nodes, rows_ahead=ahead)
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


def read_windows(
    reads: Sequence[Read],
    nodes: NodeReader,
    *,
    seed: int,
    epoch: int,
    position: int = 0,
    unit: int = 1,
    scratch: WindowScratch | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the kept rows of window reads, in order, each window ordered by the node that
    holds all of it where there is one, else here (see the module docstring).

    Args:
        reads: the window reads and their pieces.
        nodes: the client's node reader.
        seed: the job's shuffle seed.
        epoch: the epoch.
        position: rows the consumer received before (the chunking hint).
        unit: rows per unit of the consumer's batches (the chunking hint).
        scratch: the consumer's join buffer (None: a new one).

    Raises:
        AuthError, FeederError: as reading a piece or a window does.
    """
    scratch = scratch if scratch is not None else WindowScratch()
    for segment in _segments(reads, nodes):
        rest = segment.reads
        if segment.location is not None:
            node = _NodeWindows(segment.location, segment.reads, nodes)
            for batch in node.batches(Chunking.at(position, unit)):
                position += batch.num_rows
                yield batch
            rest = node.rest()
            if not rest:
                continue
        for batch in _consumer_ordered(rest, nodes, seed=seed, epoch=epoch, scratch=scratch):
            position += batch.num_rows
            yield batch


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
    window = answer["window"]
    yield from read_windows(
        [(window, _pieces(window, pieces))],
        nodes,
        seed=seed,
        epoch=epoch,
        position=position,
        unit=unit,
        scratch=scratch,
    )


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
    endpoints: Sequence[flight.FlightEndpoint],
    *,
    seed: int,
    epoch: int,
    nodes: NodeReader,
    unit: int = 1,
) -> Iterator[pa.RecordBatch]:
    """Yield a static-mode MIX share, window read by window read, in order
    (:func:`read_windows`; ``unit``: the consumer's batch rows, the chunking hint)."""
    reads = [(meta, _pieces(meta, group)) for meta, group in _reads(endpoints)]
    yield from read_windows(reads, nodes, seed=seed, epoch=epoch, unit=unit)


def is_mixed(endpoints: Sequence[flight.FlightEndpoint]) -> bool:
    """Whether a static share is MIX window reads (endpoints carry window metadata)."""
    return bool(endpoints) and bool(endpoints[0].app_metadata)
