"""The data node: a Flight server that serves cached slices.

:class:`DataNode` answers ``do_get(ticket)``: it verifies the signed ticket,
checks the caller's job header and the snapshot, materialises the slice from
table storage if this node has not cached it (failover), and streams rows
``[start, stop)`` of the slice in the epoch's order — memory-mapped and
zero-copy in table order, gathered with ``take`` when shuffled, as runs of
contiguous rows for a MIX block stream (:mod:`feeder.protocol.blocks`). Every bad
ticket gets a Flight error; the server keeps serving.

:func:`feeder.node.task.run_data_node` is the Spark-task loop around it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.node.cache import CachedSlice, SliceCache, SliceUnreadable
from feeder.node.materialize import SliceSource
from feeder.node.ranges import range_rows
from feeder.node.refresh import SourceOpener
from feeder.node.settings import DEFAULT_BATCH_ROWS
from feeder.node.window_serving import ordered_windows
from feeder.protocol.auth import (
    caller_chunking,
    caller_host,
    caller_job,
    caller_windows,
    server_middleware,
)
from feeder.protocol.auth import server_tls_kwargs as _server_tls_kwargs
from feeder.protocol.chunking import Chunking
from feeder.protocol.config import TLSConfig
from feeder.protocol.fork_guard import TrackedFlightServer
from feeder.protocol.node_messages import (
    MAX_JOBS_READ,
)
from feeder.protocol.slice_plan import SlicePlan
from feeder.protocol.slice_rows import check_range
from feeder.protocol.tickets import (
    NO_SNAPSHOT,
    TicketClaims,
    TicketSigner,
    snapshot_key,
    split_bundle,
)
from feeder.protocol.window_gather import WindowSpec, marked, parse_windows
from feeder.protocol.wire_errors import UnservedCalls, to_wire
from jobs.errors import FeederError

log = logging.getLogger(__name__)


@dataclass
class NodeStats:
    """Counters a node reports in ``node_heartbeat`` (see PROTOCOL.md)."""

    slices_cached: int = 0
    cache_bytes: int = 0
    storage_bytes_read: int = 0
    rows_served: int = 0
    rows_served_local: int = 0
    rows_served_ordered: int = 0
    rows_served_same_host: int = 0
    bytes_served: int = 0
    errors: int = 0


class DataNode(UnservedCalls, TrackedFlightServer):
    """Flight server for one node's slice cache (``do_get`` only).

    Every refusal is a coded Flight error (:mod:`feeder.protocol.wire_errors`);
    an unexpected failure, before or while streaming, is logged with its
    traceback under an error id and the client gets only the id.
    """

    def __init__(
        self,
        location: str = "grpc://127.0.0.1:0",
        *,
        signer: TicketSigner,
        cache: SliceCache,
        token: str | SecretStr | None = None,
        tls: TLSConfig | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        on_cached: Callable[[CachedSlice, int], None] | None = None,
    ) -> None:
        super().__init__(location, middleware=server_middleware(token), **_server_tls_kwargs(tls))
        self.signer = signer
        self.cache = cache
        self.batch_rows = batch_rows
        self.on_cached = on_cached
        self.configured = False
        self.opener: SourceOpener | None = None  # opens the sources of later snapshots
        #: the snapshots whose tickets this node honours (ticket snapshot ids)
        self.snapshots: set[int] = set()
        self.plans: dict[int, SlicePlan] = {}
        self._sources: dict[int, SliceSource | None] = {}
        self._slice_source: dict[int, int] = {}  # slice id -> the snapshot that reads it
        self._stats = NodeStats()
        self._lock = threading.Lock()
        self._jobs_read: set[str] = set()  # jobs whose tickets passed since the last take
        #: this node's host (locality): rows served to a caller naming it are counted
        self.host: str | None = None
        self._slice_locks: dict[int, threading.Lock] = {}

    def configure(
        self,
        *,
        snapshot_id: int | None,
        source: SliceSource | None,
        plans: Mapping[int, SlicePlan],
    ) -> None:
        """Serve one snapshot and its slice plans (from ``register``), replacing any others."""
        with self._lock:
            self.snapshots, self._sources, self.plans, self._slice_source = set(), {}, {}, {}
        self.add_snapshot(snapshot_id=snapshot_id, source=source, plans=plans)

    def add_snapshot(
        self,
        *,
        snapshot_id: int | None,
        source: SliceSource | None,
        plans: Mapping[int, SlicePlan],
    ) -> None:
        """Also serve ``snapshot_id``; ``source`` reads ``plans`` (slices new to this node)."""
        key = snapshot_key(snapshot_id)
        with self._lock:
            self.snapshots.add(key)
            if source is not None or key not in self._sources:
                self._sources[key] = source
            self.plans.update(plans)
            self._slice_source.update(dict.fromkeys(plans, key))
            self.configured = True

    def retire(self, snapshot_ids: Iterable[int], drop: Iterable[int]) -> None:
        """Stop honouring tickets of ``snapshot_ids``; delete the caches of slices ``drop``."""
        with self._lock:
            self.snapshots.difference_update(snapshot_ids)
            dropped = [s for s in drop if self.plans.pop(s, None) is not None]
            for s in dropped:
                self._slice_source.pop(s, None)
                self._slice_locks.pop(s, None)
            used = set(self._slice_source.values()) | self.snapshots
            for key in [k for k in self._sources if k not in used]:
                del self._sources[key]
        for s in drop:
            self.cache.drop(s)
        log.info("data node: %d slice(s) dropped after a refresh", len(dropped))

    def stats(self) -> dict[str, int]:
        """Return the node's counters as a JSON-able dict."""
        with self._lock:
            self._stats.slices_cached = len(self.cache.entries())
            self._stats.cache_bytes = self.cache.total_bytes()
            return asdict(self._stats)

    def _note_job(self, job: str) -> None:
        with self._lock:
            if len(self._jobs_read) < MAX_JOBS_READ:
                self._jobs_read.add(job)

    def take_jobs_read(self) -> tuple[str, ...]:
        """The jobs whose tickets this node accepted since the last call (then forgotten):
        sent with each heartbeat, so the coordinator keeps a job that reads without
        calling it alive."""
        with self._lock:
            jobs, self._jobs_read = tuple(sorted(self._jobs_read)), set()
        return jobs

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def ensure_cached(self, slice_id: int) -> CachedSlice:
        """Return slice ``slice_id``'s cache entry, materialising it from storage first if needed.

        Raises FeederError if the slice is unknown to this node's plan.
        """
        entry = self.cache.get(slice_id)
        if entry is not None:
            return entry
        with self._lock:
            lock = self._slice_locks.setdefault(slice_id, threading.Lock())
            plan = self.plans.get(slice_id)
            source = self._sources.get(self._slice_source.get(slice_id, NO_SNAPSHOT))
        with lock:
            entry = self.cache.get(slice_id)
            if entry is not None:
                return entry
            if plan is None or source is None:
                raise FeederError(f"slice {slice_id} is not in this node's plan")
            result = source.materialize(plan)
            entry = self.cache.write(slice_id, result.table)
            self._count(storage_bytes_read=result.storage_bytes)
        if self.on_cached is not None:
            self.on_cached(entry, result.storage_bytes)
        return entry

    def _open_cached(self, slice_id: int) -> tuple[CachedSlice, pa.Table]:
        """Return slice ``slice_id``'s entry and mapped table; a slice whose files no longer
        read back as written is dropped and materialised again (once).

        Raises:
            SliceUnreadable: the slice is unreadable even freshly materialised.
            FeederError: the slice is unknown to this node's plan.
        """
        for attempt in range(2):
            entry = self.ensure_cached(slice_id)
            try:
                return entry, self.cache.open(slice_id)
            except SliceUnreadable as exc:
                if attempt:
                    raise
                log.warning("data node: %s; materialising it again", exc)
                self._count(errors=1)
        raise AssertionError("unreachable")

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> Any:
        """Stream the rows a signed ticket (or a bundle of them) names; every refusal is a
        coded Flight error."""
        what = "do_get"
        try:
            raws = split_bundle(ticket.ticket)
            claims = [self.signer.verify(raw) for raw in raws]
            what = f"do_get of slice {claims[0].slice_id}"
            if len(claims) > 1:
                what = f"do_get of {len(claims)} slice ranges"
            chunking = self._check(context, claims)
            same = self.host is not None and caller_host(context) == self.host
            windows = parse_windows(caller_windows(context), len(claims))
            if windows is not None:
                what = f"do_get of {len(windows)} windows"
                return self._windows(claims, windows, chunking, what, same_host=same)
            if len(claims) > 1:
                return self._bundle(claims, chunking, what, same_host=same)
            _, opened = self._open_cached(claims[0].slice_id)
            rows = range_rows(
                self.cache, opened, claims[0], chunking=chunking, batch_rows=self.batch_rows
            )
            if isinstance(rows, pa.Table):  # table order: Flight streams the mapped slice
                self._count(
                    rows_served=rows.num_rows,
                    bytes_served=rows.nbytes,
                    rows_served_same_host=rows.num_rows if same else 0,
                )
                return flight.RecordBatchStream(rows)
            schema = self.cache.select(opened, claims[0].columns).schema
            return flight.GeneratorStream(schema, self._counted(rows, what, same_host=same))
        except Exception as exc:  # e.g. storage unreachable during a failover materialisation
            self._count(errors=1)
            raise to_wire(exc, what, log) from None

    def _check(self, context: flight.ServerCallContext, claims: list[TicketClaims]) -> Chunking:
        """Refuse what no ticket of ``claims`` may have; return the caller's chunking hint."""
        _check_job(caller_job(context), claims)
        self._note_job(claims[0].job)
        chunking = caller_chunking(context)  # FeederError for a malformed hint, before any work
        self._check_served(claims)
        return chunking

    def grant_local(self, job: str | None, ticket: bytes) -> list[tuple[CachedSlice, TicketClaims]]:
        """Check a ``do_get`` ticket (or bundle) for a local read exactly as ``do_get`` does;
        return each range's claims with its slice's cache entry (materialised if needed).

        The ranges are counted as served (``rows_served`` and ``rows_served_local``).

        Raises:
            AuthError: a ticket is not signed by this session.
            FlightError: the job, snapshot or slice is refused (as ``do_get`` refuses it).
            FeederError: a range lies outside its slice, or a column is unknown.
        """
        try:
            claims = [self.signer.verify(raw) for raw in split_bundle(ticket)]
            _check_job(job, claims)
            self._note_job(claims[0].job)
            self._check_served(claims)
            entries: dict[int, CachedSlice] = {}
            for c in claims:
                if c.slice_id not in entries:
                    entry, opened = self._open_cached(c.slice_id)
                    self.cache.select(opened, c.columns)  # an unknown column fails here
                    entries[c.slice_id] = entry
                check_range(c.slice_id, entries[c.slice_id].num_rows, c.start, c.stop)
        except Exception:
            self._count(errors=1)
            raise
        rows = sum(c.stop - c.start for c in claims)
        # a local read is on this host by construction (the socket is node-local)
        self._count(rows_served=rows, rows_served_local=rows, rows_served_same_host=rows)
        return [(entries[c.slice_id], c) for c in claims]

    def _check_served(self, claims: list[TicketClaims]) -> None:
        """Refuse tickets this node does not serve: not registered yet, another snapshot,
        an unknown slice, or a bundle mixing projections."""
        if not self.configured:
            raise flight.FlightUnavailableError("data node is not registered yet; retry")
        if len({c.columns for c in claims}) > 1:
            raise FeederError("the tickets of a bundle must name the same columns")
        for c in claims:
            if c.snapshot_id not in self.snapshots:
                raise flight.FlightUnauthorizedError(
                    f"ticket is for snapshot {c.snapshot_id}, this node serves "
                    f"{sorted(self.snapshots)} (the feeder moved on: start the next epoch)"
                )
            if self.cache.get(c.slice_id) is None and c.slice_id not in self.plans:
                raise flight.FlightUnavailableError(
                    f"slice {c.slice_id} is unknown to this node; try another location"
                )

    def _bundle(
        self, claims: list[TicketClaims], chunking: Chunking, what: str, *, same_host: bool
    ) -> Any:
        """Stream the ranges of a bundle one after another (the hint applies to the first).

        Every range is opened and checked before the first row is sent: a bad range
        fails the whole call, never a stream that stops half-way."""
        tables = {c.slice_id: self._open_cached(c.slice_id)[1] for c in claims}
        for c in claims:
            check_range(c.slice_id, tables[c.slice_id].num_rows, c.start, c.stop)
        schema = self.cache.select(tables[claims[0].slice_id], claims[0].columns).schema

        def batches() -> Iterator[pa.RecordBatch]:
            hint = chunking
            for c in claims:
                table = tables[c.slice_id]
                rows = range_rows(self.cache, table, c, chunking=hint, batch_rows=self.batch_rows)
                yield from rows.to_batches() if isinstance(rows, pa.Table) else rows
                hint = Chunking()

        return flight.GeneratorStream(schema, self._counted(batches(), what, same_host=same_host))

    def _windows(
        self,
        claims: list[TicketClaims],
        specs: list[WindowSpec],
        chunking: Chunking,
        what: str,
        *,
        same_host: bool,
    ) -> Any:
        """Stream whole MIX windows in their final order (:mod:`feeder.node.window_serving`).

        Every piece is opened and checked before the first row is sent."""
        tables = {c.slice_id: self._open_cached(c.slice_id)[1] for c in claims}
        for c in claims:
            check_range(c.slice_id, tables[c.slice_id].num_rows, c.start, c.stop)
        pieces = [(self.cache.select(tables[c.slice_id], c.columns), c) for c in claims]
        batches = ordered_windows(pieces, specs, chunking=chunking, batch_rows=self.batch_rows)
        return flight.GeneratorStream(
            marked(pieces[0][0].schema),
            self._counted(batches, what, ordered=True, same_host=same_host),
        )

    def _counted(
        self,
        batches: Iterator[pa.RecordBatch],
        what: str,
        *,
        ordered: bool = False,
        same_host: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                self._count(
                    rows_served=batch.num_rows,
                    bytes_served=batch.nbytes,
                    rows_served_ordered=batch.num_rows if ordered else 0,
                    rows_served_same_host=batch.num_rows if same_host else 0,
                )
                yield batch
        except Exception as exc:  # mid-stream: a cache file gone or unreadable
            self._count(errors=1)
            raise to_wire(exc, what, log) from None
        finally:
            # gathered batches are the node's only sizeable private memory: hand the
            # allocator's cached pages back once a shuffled stream ends
            pa.default_memory_pool().release_unused()


def _check_job(job: str | None, claims: list[TicketClaims]) -> None:
    """Refuse tickets issued to another job than the caller's."""
    for c in claims:
        if job != c.job:
            raise flight.FlightUnauthorizedError(
                f"ticket was issued to job {c.job!r}, not to the caller's job {job!r}"
            )
