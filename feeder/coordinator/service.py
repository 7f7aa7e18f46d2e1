"""The coordinator: the feeder's one Flight server in the Spark driver (see PROTOCOL.md).

It pins one snapshot (a :class:`ServedSnapshot`), tracks its data nodes in a
:class:`~feeder.coordinator.registry.NodeRegistry`, answers static-mode consumers with
``get_flight_info`` (a signed ticket per slice range, every live node as a
location) and dynamic-mode consumers with ``lease`` / ``heartbeat`` / ``done``
(one :class:`~feeder.coordinator.leases.LeaseBook` per job and epoch). Failover support:
``resume`` re-signs the rest of a ticket after a broken stream and returns the
current live locations. The node-only actions (``register``, ``cached``,
``node_heartbeat``) also need a single-use proof of the session key
(:mod:`feeder.protocol.node_auth`), which consumers never hold. Every refusal is a
Flight error; the server stays up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.coordinator import mixplan
from feeder.coordinator.leases import LeaseBook
from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.registry import NodeRegistry
from feeder.protocol.auth import (
    caller_job,
    caller_node_proof,
    location_uri,
    server_middleware,
    server_tls_kwargs,
)
from feeder.protocol.config import TLSConfig
from feeder.protocol.messages import (
    EpochParams,
    LeaseRequest,
    StaticRequest,
    field_int,
    field_name,
    parse_json,
)
from feeder.protocol.node_auth import KEY_PURPOSE, NODE_ACTIONS, NodeCallVerifier
from feeder.protocol.shuffle import SliceRange, epoch_stream, rank_ranges, skip_rows, split_ranges
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.slice_plan import SlicePlan
from feeder.protocol.tickets import TicketClaims, TicketSigner
from jobs.errors import AuthError, SpecError

log = logging.getLogger(__name__)

STATUS_VERSION = 1
NO_SNAPSHOT = -1  # ticket snapshot id of a table without snapshots (no ticket is ever issued)

ACTIONS = {
    "status": "status document (JSON)",
    "lease": "dynamic mode: lease the next unit of a job's epoch",
    "heartbeat": "dynamic mode: extend a consumer's leases, report rows delivered",
    "done": "dynamic mode: acknowledge a leased unit",
    "resume": "failover: re-sign the rest of a ticket, with the current live locations",
    "register": "data nodes: join the feeder, get the plan and assigned slices",
    "cached": "data nodes: report a cached slice and its exact row count",
    "node_heartbeat": "data nodes: report stats, get new assignments or stop",
}


@dataclass(frozen=True, kw_only=True)
class ServedSnapshot:
    """What one feeder session serves: a pinned snapshot of a table, projected and filtered."""

    table: str
    snapshot_id: int | None
    metadata_location: str
    io_properties: Mapping[str, str] = field(repr=False)
    row_filter: str | None
    columns: tuple[str, ...] | None
    schema: pa.Schema
    plans: tuple[SlicePlan, ...]

    def project(self, columns: tuple[str, ...] | None) -> pa.Schema:
        """The schema of a job reading ``columns`` (None: all); SpecError for unknown names."""
        if columns is None:
            return self.schema
        unknown = [c for c in columns if c not in self.schema.names]
        if unknown:
            raise SpecError(
                f"columns: unknown column(s) {unknown}; this feeder serves {self.schema.names}"
            )
        return pa.schema([self.schema.field(c) for c in columns])


@dataclass
class _JobState:
    epochs: set[int] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)


@dataclass
class _Book:
    params: EpochParams
    book: LeaseBook
    announced_end: bool = False


class _Refused(Exception):
    """Internal: a request refused with a Flight error class and message."""

    def __init__(self, kind: type[Exception], message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Coordinator(flight.FlightServerBase):
    """Flight server of one feeder session (consumers and data nodes talk to it)."""

    def __init__(
        self,
        served: ServedSnapshot,
        *,
        signer: TicketSigner,
        slots: int,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | SecretStr | None = None,
        tls: TLSConfig | None = None,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float = 2.0,
        metrics: FeederMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            location_uri(host, port, tls),
            middleware=server_middleware(token),
            **server_tls_kwargs(tls),
        )
        self.served = served
        self.signer = signer
        self._node_calls = NodeCallVerifier(signer.derived_key(KEY_PURPOSE))
        self.endpoint = location_uri(host, self.port, tls)
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.registry = NodeRegistry(
            len(served.plans),
            slots=slots,
            node_timeout=max(10.0, 5 * heartbeat_seconds),
            clock=clock,
        )
        self._heartbeats: dict[str, int] = {}
        self._jobs: dict[str, _JobState] = {}
        self._books: dict[tuple[str, int], _Book] = {}
        self._stopping = False
        self._closed = threading.Event()
        self._monitor = threading.Thread(
            target=self._watch_nodes, name="icefeed-coordinator-monitor", daemon=True
        )
        self._monitor.start()
        log.info(
            "coordinator at %s: table %s snapshot %s, %d slices, %d node slots",
            self.endpoint,
            served.table,
            served.snapshot_id,
            len(served.plans),
            slots,
        )

    # --- driver-side API ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every slice is cached somewhere (exact row counts known)."""
        with self._lock:
            return self.registry.ready

    def wait_ready(self, timeout: float) -> bool:
        """Block until ready or ``timeout`` seconds pass; return whether it is ready."""
        with self._ready:
            return self._ready.wait_for(lambda: self.registry.ready, timeout=timeout)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Block until ``predicate(status())`` holds (re-checked on every node event)."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                if predicate(self._status_locked()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(min(left, 0.5))

    def node_lost(self, node_id: str, reason: str) -> None:
        """Declare a node dead (its Spark job failed or ended); its slices move on."""
        with self._ready:
            moved = self.registry.mark_dead(node_id)
            self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.nodes_lost.inc()
        self._publish_nodes()
        log.warning(
            "data node %s lost (%s); %d uncached slices handed to other nodes",
            node_id,
            reason,
            len(moved),
        )

    def request_stop(self) -> None:
        """Tell every node to stop at its next heartbeat."""
        with self._lock:
            self._stopping = True

    def close(self) -> None:
        """Stop the monitor thread and the Flight server."""
        self._closed.set()
        self.shutdown()
        self._monitor.join(timeout=5)

    def status(self) -> dict[str, Any]:
        """The status document (PROTOCOL.md, *Status document*)."""
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> dict[str, Any]:
        reg = self.registry
        nodes = []
        for node in reg.nodes.values():
            entry = node.to_dict()
            entry["heartbeats"] = self._heartbeats.get(node.node_id, 0)
            nodes.append(entry)
        known = [n for n in reg.row_counts if n is not None]
        return {
            "version": STATUS_VERSION,
            "endpoint": self.endpoint,
            "table": self.served.table,
            "snapshot_id": self.served.snapshot_id,
            "row_filter": self.served.row_filter,
            "columns": list(self.served.schema.names),
            "ready": reg.ready,
            "slices": reg.num_slices,
            "slices_cached": sum(1 for n in reg.row_counts if n is not None),
            "rows": sum(known) if reg.ready else None,
            "bytes_cached": sum(n["cache_bytes"] for n in nodes if n["alive"]),
            "storage_bytes_read": sum(n["storage_bytes_read"] for n in nodes),
            "nodes_alive": len(reg.alive()),
            "nodes": nodes,
            "jobs": {
                job: {
                    "epochs": sorted(state.epochs),
                    "consumers": len(state.consumers),
                    "modes": sorted(state.modes),
                }
                for job, state in self._jobs.items()
            },
        }

    def _watch_nodes(self) -> None:
        while not self._closed.wait(self.heartbeat_seconds):
            with self._ready:
                silent = self.registry.expire()
                if silent:
                    self._ready.notify_all()
            for node_id in silent:
                log.warning("data node %s silent for too long; declared dead", node_id)
                if self.metrics is not None:
                    self.metrics.nodes_lost.inc()

    # --- Flight handlers ------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        """Every action this coordinator answers."""
        return list(ACTIONS.items())

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Static mode: the caller's share of an epoch as signed tickets, in delivery order."""
        return self._guard("flight_info", lambda: self._flight_info(context, descriptor))

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        """Answer one JSON action (see ACTIONS); results are one JSON document."""
        kind = action.type
        handler = {
            "status": self._act_status,
            "lease": self._act_lease,
            "heartbeat": self._act_heartbeat,
            "done": self._act_done,
            "resume": self._act_resume,
            "register": self._act_register,
            "cached": self._act_cached,
            "node_heartbeat": self._act_node_heartbeat,
        }.get(kind)
        if handler is None:
            self._count_error("unknown_action")
            raise pa.ArrowInvalid(f"unknown action {kind[:64]!r}; known: {sorted(ACTIONS)}")
        body = action.body.to_pybytes() if action.body is not None else b""

        def answer() -> dict[str, Any]:
            if kind in NODE_ACTIONS:
                self._check_node_call(context, kind, body)
            return handler(context, body)

        result = self._guard(kind, answer)
        return iter([json.dumps(result, separators=(",", ":")).encode()])

    def _check_node_call(self, context: flight.ServerCallContext, kind: str, body: bytes) -> None:
        """Refuse (AuthError, before any state changes) a node-only call without valid proof."""
        try:
            self._node_calls.verify(kind, body, caller_node_proof(context))
        except AuthError as exc:
            log.warning("refused %s from %s: %s", kind, context.peer(), exc)
            raise

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        """The schema a job reading the command's ``columns`` gets (no need to be ready)."""

        def answer() -> flight.SchemaResult:
            if descriptor.descriptor_type != flight.DescriptorType.CMD:
                raise SpecError("only command descriptors are served")
            request = StaticRequest.from_command(bytes(descriptor.command or b""))
            return flight.SchemaResult(self.served.project(request.columns))

        return self._guard("schema", answer)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> Any:
        """The coordinator serves no rows: tickets go to the data nodes."""
        self._count_error("do_get")
        raise pa.ArrowInvalid("the coordinator serves no data; send tickets to a data node")

    # --- guards -------------------------------------------------------------------------------

    def _count_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(kind=kind).inc()

    def _guard(self, kind: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _Refused as exc:
            self._count_error(kind)
            raise exc.kind(str(exc)) from None
        except AuthError as exc:
            self._count_error(kind)
            raise flight.FlightUnauthenticatedError(str(exc)) from None
        except (SpecError, ValueError) as exc:
            self._count_error(kind)
            raise pa.ArrowInvalid(f"{kind}: {exc}") from None

    def _row_counts(self) -> list[int]:
        """Exact row counts (caller holds the lock); Unavailable until ready."""
        reg = self.registry
        if not reg.ready:
            cached = sum(1 for n in reg.row_counts if n is not None)
            raise _Refused(
                flight.FlightUnavailableError,
                f"feeder is not ready: {cached} of {reg.num_slices} slices cached; retry",
            )
        return reg.exact_row_counts()

    def _ticket(self, params: EpochParams, unit: SliceRange) -> str:
        claims = TicketClaims(
            job=params.job,
            snapshot_id=self._snapshot(),
            slice_id=unit.slice_id,
            start=unit.start,
            stop=unit.stop,
            epoch=params.epoch,
            seed=params.seed,
            shuffle=params.shuffle,
            columns=params.columns,
            block_rows=params.mix.block_rows if params.shuffle is Shuffle.MIX else 0,
        )
        return self.signer.sign(claims).decode("ascii")

    def _snapshot(self) -> int:
        sid = self.served.snapshot_id
        return NO_SNAPSHOT if sid is None else sid

    def _note_consumer(self, params: EpochParams, consumer: str, mode: str) -> None:
        state = self._jobs.setdefault(params.job, _JobState())
        new_epoch = params.epoch not in state.epochs
        state.epochs.add(params.epoch)
        state.consumers.add(consumer)
        state.modes.add(mode)
        if new_epoch:
            log.info("job %s started epoch %d (%s mode)", params.job, params.epoch, mode)
        if self.metrics is not None:
            self.metrics.consumers.labels(job=params.job).set(len(state.consumers))

    # --- static mode ------------------------------------------------------------------------

    def _flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise SpecError("only command descriptors are served (FlightDescriptor.for_command)")
        request = StaticRequest.from_command(bytes(descriptor.command or b""))
        schema = self.served.project(request.columns)
        with self._lock:
            counts = self._row_counts()
            if request.shuffle is Shuffle.MIX:
                endpoints, total = mixplan.static_endpoints(
                    request, counts, self._ticket, self.registry.locations
                )
                self._note_consumer(request, f"static:{request.rank}/{request.worker}", "static")
                return flight.FlightInfo(schema, descriptor, endpoints, total, -1)
            ranges = rank_ranges(
                counts,
                seed=request.seed,
                epoch=request.epoch,
                shuffle=request.shuffle.shuffled,
                rank=request.rank,
                world_size=request.world_size,
                drop_last=request.drop_last,
            )
            ranges = split_ranges(
                ranges, part=request.worker, parts=request.num_workers, unit=request.unit
            )
            ranges = skip_rows(ranges, request.skip_rows)
            endpoints = [
                flight.FlightEndpoint(
                    self._ticket(request, r),
                    [flight.Location(uri) for uri in self.registry.locations(r.slice_id)],
                )
                for r in ranges
            ]
            self._note_consumer(request, f"static:{request.rank}/{request.worker}", "static")
        if self.metrics is not None:
            self.metrics.plans.labels(job=request.job).inc()
        total = sum(r.num_rows for r in ranges)
        return flight.FlightInfo(schema, descriptor, endpoints, total, -1)

    # --- dynamic mode -----------------------------------------------------------------------

    def _book(self, params: EpochParams, counts: list[int]) -> _Book:
        key = (params.job, params.epoch)
        entry = self._books.get(key)
        if entry is None:
            if params.shuffle is Shuffle.MIX:
                units = mixplan.lease_units(params, counts)
            else:
                units = epoch_stream(
                    counts, seed=params.seed, epoch=params.epoch, shuffle=params.shuffle.shuffled
                )
            entry = _Book(
                params, LeaseBook(units, lease_seconds=self.lease_seconds, clock=self._clock)
            )
            self._books[key] = entry
        elif (entry.params.seed, entry.params.shuffle, entry.params.columns, entry.params.mix) != (
            params.seed,
            params.shuffle,
            params.columns,
            params.mix,
        ):
            raise SpecError(
                f"job {params.job!r} epoch {params.epoch} is leased with seed="
                f"{entry.params.seed}, shuffle={entry.params.shuffle.value}, columns="
                f"{entry.params.columns}; every consumer of a job must use the same"
            )
        return entry

    def _expire_book(self, entry: _Book) -> None:
        expired = entry.book.expire()
        if expired:
            log.warning(
                "job %s epoch %d: %d lease(s) expired, their rest is leased again",
                entry.params.job,
                entry.params.epoch,
                len(expired),
            )
            if self.metrics is not None:
                self.metrics.lease_expiries.labels(job=entry.params.job).inc(len(expired))

    def _announce_end(self, entry: _Book) -> None:
        if entry.book.finished and not entry.announced_end:
            entry.announced_end = True
            log.info(
                "job %s epoch %d done: %d rows delivered",
                entry.params.job,
                entry.params.epoch,
                entry.book.total_rows,
            )

    def _act_status(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        return self.status()

    def _act_lease(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        request = LeaseRequest.from_body(body)
        self.served.project(request.columns)
        with self._lock:
            counts = self._row_counts()
            entry = self._book(request, counts)
            self._expire_book(entry)
            lease = entry.book.lease(request.consumer)
            self._note_consumer(request, f"dynamic:{request.consumer}", "dynamic")
            if lease is None:
                self._announce_end(entry)
                return {
                    "unit": None,
                    "epoch_done": entry.book.finished,
                    "retry_after": min(1.0, self.lease_seconds / 4),
                }
            unit = lease.unit
            mixed = entry.params.shuffle is Shuffle.MIX
            locations = [] if mixed else self.registry.locations(unit.slice_id)
            if mixed:
                window = mixplan.lease_window(
                    entry.params, counts, unit, self._ticket, self.registry.locations
                )
        if self.metrics is not None:
            self.metrics.leases.labels(job=request.job).inc()
        if mixed:
            return {
                "lease": lease.lease_id,
                "unit": {"slice_id": unit.slice_id, "start": unit.start, "stop": unit.stop},
                **window,
                "lease_seconds": self.lease_seconds,
            }
        return {
            "lease": lease.lease_id,
            "unit": {"slice_id": unit.slice_id, "start": unit.start, "stop": unit.stop},
            "ticket": self._ticket(request, unit),
            "locations": locations,
            "lease_seconds": self.lease_seconds,
        }

    def _lease_call(self, body: bytes, what: str) -> tuple[dict[str, Any], _Book, str]:
        data = parse_json(body, what)
        job, epoch = field_name(data, "job"), field_int(data, "epoch", 0, 2**32 - 1)
        consumer = field_name(data, "consumer")
        entry = self._books.get((job, epoch))
        if entry is None:
            raise SpecError(f"job {job!r} has no dynamic epoch {epoch}: lease first")
        return data, entry, consumer

    def _act_heartbeat(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        with self._lock:
            data, entry, consumer = self._lease_call(body, "heartbeat")
            progress = data.get("progress", {})
            if not isinstance(progress, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in progress.items()
            ):
                raise SpecError("progress: must map lease ids to rows delivered")
            self._expire_book(entry)
            lost = entry.book.heartbeat(consumer, progress)
        return {"lost": lost}

    def _act_done(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        with self._lock:
            data, entry, consumer = self._lease_call(body, "done")
            acknowledged = entry.book.done(consumer, field_name(data, "lease"))
            self._announce_end(entry)
        return {"acknowledged": acknowledged}

    # --- failover ---------------------------------------------------------------------------

    def _act_resume(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        data = parse_json(body, "resume")
        raw = data.get("ticket")
        if not isinstance(raw, str):
            raise SpecError("ticket: must be the ticket string")
        claims = self.signer.verify(raw.encode("utf-8", "replace"))
        job = caller_job(context)
        if job != claims.job:
            raise _Refused(
                flight.FlightUnauthorizedError,
                f"ticket was issued to job {claims.job!r}, not to the caller's job {job!r}",
            )
        delivered = field_int(data, "delivered")
        start = min(claims.start + delivered, claims.stop)
        with self._lock:
            if claims.snapshot_id != self._snapshot():
                raise _Refused(flight.FlightUnauthorizedError, "ticket is for another snapshot")
            locations = self.registry.locations(claims.slice_id)
        if not locations:
            raise _Refused(flight.FlightUnavailableError, "no live data node right now; retry")
        ticket = self.signer.sign(replace(claims, start=start)).decode("ascii")
        return {"ticket": ticket, "locations": locations}

    # --- data nodes ------------------------------------------------------------------------

    def _act_register(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        data = parse_json(body, "register")
        node_id = field_name(data, "node_id")
        location = field_name(data, "location")
        pid = data.get("pid")
        cache_dir = data.get("cache_dir")
        with self._ready:
            if self._stopping:
                raise _Refused(flight.FlightUnavailableError, "feeder is stopping")
            live_slots = {n.slot for n in self.registry.alive()}
            free = [s for s in range(self.registry.slots) if s not in live_slots]
            slot = data.get(
                "slot", free[0] if free else len(self.registry.nodes) % self.registry.slots
            )
            assigned = self.registry.register(
                node_id,
                slot=slot if isinstance(slot, int) and not isinstance(slot, bool) else -1,
                location=location,
                pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                cache_dir=cache_dir if isinstance(cache_dir, str) else None,
            )
            self._heartbeats[node_id] = 0
            self._ready.notify_all()
        log.info(
            "data node %s registered at %s (slot %s, pid %s): %d slices assigned",
            node_id,
            location,
            slot,
            pid,
            len(assigned),
        )
        self._publish_nodes()
        served = self.served
        return {
            "snapshot_id": served.snapshot_id,
            "metadata_location": served.metadata_location,
            "io_properties": dict(served.io_properties),
            "row_filter": served.row_filter,
            "columns": list(served.columns) if served.columns is not None else None,
            "plans": [p.to_dict() for p in served.plans],
            "assigned": assigned,
        }

    def _act_cached(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        data = parse_json(body, "cached")
        with self._ready:
            was_ready = self.registry.ready
            self.registry.cached(
                field_name(data, "node_id"),
                field_int(data, "slice_id"),
                field_int(data, "num_rows"),
                field_int(data, "nbytes"),
            )
            now_ready = self.registry.ready
            self._ready.notify_all()
            rows = sum(n or 0 for n in self.registry.row_counts)
        if now_ready and not was_ready:
            log.info("feeder ready: %d slices, %d rows cached", len(self.served.plans), rows)
            if self.metrics is not None:
                self.metrics.ready.set(1)
        return {}

    def _act_node_heartbeat(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        data = parse_json(body, "node_heartbeat")
        node_id = field_name(data, "node_id")
        stats = data.get("stats") or {}
        if not isinstance(stats, dict):
            raise SpecError("stats: must be a JSON object")
        with self._ready:
            node = self.registry.nodes.get(node_id)
            if self._stopping or node is None or not node.alive:
                return {"stop": True, "assign": []}
            assign = self.registry.heartbeat(node_id, stats)
            self._heartbeats[node_id] = self._heartbeats.get(node_id, 0) + 1
            self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.node_stats(node_id, node.stats)
        return {"stop": False, "assign": assign}

    def _publish_nodes(self) -> None:
        if self.metrics is not None:
            with self._lock:
                alive = len(self.registry.alive())
            self.metrics.nodes_alive.set(alive)
