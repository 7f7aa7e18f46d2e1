"""The coordinator: the feeder's one Flight server in the Spark driver (see PROTOCOL.md).

It pins one snapshot (a :class:`ServedSnapshot`), tracks its data nodes in a
:class:`~feeder.coordinator.registry.NodeRegistry` and dispatches every action
by the one action table of :mod:`feeder.protocol.actions`: the consumer actions
(static plans, leases, failover) live in :mod:`feeder.coordinator.consumer_actions`,
the node-only actions (``register``, ``cached``, ``node_heartbeat``) in
:mod:`feeder.coordinator.node_actions`. A node-only action also needs a single-use
proof of the session key (:mod:`feeder.protocol.node_auth`), which consumers never
hold; it is checked before its handler runs. Every refusal is a Flight error; the
server stays up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.coordinator.consumer_actions import ConsumerActions
from feeder.coordinator.journal import Journal
from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.node_actions import NodeActions
from feeder.coordinator.registry import NodeRegistry, cache_budget
from feeder.coordinator.served import ServedSnapshot
from feeder.coordinator.snapshots import LiveSnapshots
from feeder.protocol.actions import ACTIONS, Audience
from feeder.protocol.auth import caller_node_proof, location_uri, server_middleware
from feeder.protocol.auth import server_tls_kwargs as _server_tls_kwargs
from feeder.protocol.config import TLSConfig
from feeder.protocol.fork_guard import TrackedFlightServer
from feeder.protocol.messages import StaticRequest
from feeder.protocol.node_auth import KEY_PURPOSE, NodeCallVerifier
from feeder.protocol.tickets import NO_SNAPSHOT, TicketSigner
from feeder.protocol.wire_errors import ErrorCode, UnservedCalls, to_wire, wire_error
from jobs.errors import AuthError, FeederError, SpecError

__all__ = ["NO_SNAPSHOT", "STATUS_VERSION", "Coordinator", "ServedSnapshot"]

log = logging.getLogger(__name__)

STATUS_VERSION = 1
REFRESHES_KEPT = 8  # refreshes the status document lists

Handler = Callable[[flight.ServerCallContext, bytes], dict[str, Any]]
#: what the ``refresh`` action runs (Feeder.refresh): resolve the table, add its snapshot
Refresher = Callable[[], dict[str, Any]]


class Coordinator(UnservedCalls, TrackedFlightServer):
    """Flight server of one feeder session (consumers and data nodes talk to it).

    Starts serving at construction; a monitor thread declares nodes dead that
    stay silent for ``max(10 s, 5 × heartbeat_seconds)``.

    Args:
        served: the pinned snapshot and its slice plans.
        signer: signs and verifies tickets; its key also derives the node-call key.
        slots: how many data nodes the launcher runs (slice ownership is by slot).
        host: bind address.
        port: bind port (0: any free port).
        token: bearer token every caller must send (None: an open feeder).
        tls: certificate and key for ``grpc+tls`` (None: plain gRPC).
        lease_seconds: dynamic-mode lease time.
        heartbeat_seconds: the nodes' heartbeat period.
        metrics: Prometheus metrics to update (None: none).
        limits: bounds on per-job state (None: the defaults of CoordinatorLimits).
        clock: monotonic clock (injectable for tests).
        row_copy: whether the nodes cache row copies (they budget twice the disk,
            :func:`~feeder.coordinator.registry.cache_budget`).
        journal: where the epoch state is saved on every change (None: nowhere).
        restored: the journal's epoch state to continue (None: a fresh session).
        snapshots: the live snapshots to serve, rebuilt from the journal by a restarted
            driver (None: ``served`` alone; given, ``served`` is its newest).
        refresher: what the ``refresh`` action runs (None: the action is refused).
        locality: build dynamic MIX epochs' windows per host group, so consumers lease
            their own host's windows first (docs/feeder.md, *Locality*).
    """

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
        limits: CoordinatorLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        row_copy: bool = True,
        journal: Journal | None = None,
        restored: dict[str, Any] | None = None,
        snapshots: LiveSnapshots | None = None,
        refresher: Refresher | None = None,
        locality: bool = False,
    ) -> None:
        super().__init__(
            location_uri(host, port, tls),
            middleware=server_middleware(token),
            **_server_tls_kwargs(tls),
        )
        self.served = served
        self.snapshots = snapshots if snapshots is not None else LiveSnapshots(served)
        self.refresher = refresher
        self.row_copy = row_copy
        self._refreshes: list[dict[str, Any]] = []
        self.signer = signer
        self._node_calls = NodeCallVerifier(signer.derived_key(KEY_PURPOSE))
        self.endpoint = location_uri(host, self.port, tls)
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.registry = _registry(
            self.snapshots,
            slots=slots,
            node_timeout=max(10.0, 5 * heartbeat_seconds),
            clock=clock,
            row_copy=row_copy,
        )
        try:
            self._consumers = ConsumerActions(
                served,
                snapshots=self.snapshots,
                signer=signer,
                registry=self.registry,
                lock=self._ready,
                lease_seconds=lease_seconds,
                metrics=metrics,
                clock=clock,
                limits=limits,
                journal=journal,
                restored=restored,
                locality=locality,
            )
        except FeederError:  # a damaged journal: free the port before saying so
            self.shutdown()
            raise
        self._nodes = NodeActions(
            served,
            snapshots=self.snapshots,
            registry=self.registry,
            ready=self._ready,
            metrics=metrics,
        )
        self._consumers.on_bound = self._retire_unused
        self._consumers.nodes_serve = self._nodes.nodes_serve
        self._nodes.on_jobs_read = self._consumers.books.touch
        if metrics is not None:
            metrics.set_snapshot(served.snapshot_id)
        self._handlers = self._dispatch_table()
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

    def _dispatch_table(self) -> dict[str, Handler]:
        """One handler per action of the protocol's table, from the side its audience names."""
        sides: dict[Audience, dict[str, Handler]] = {
            Audience.CONSUMER: {
                "status": self._act_status,
                "refresh": self._act_refresh,
                **self._consumers.handlers(),
            },
            Audience.NODE: self._nodes.handlers(),
        }
        missing = [name for name, spec in ACTIONS.items() if name not in sides[spec.audience]]
        extra = {name for side in sides.values() for name in side} - set(ACTIONS)
        if missing or extra:  # a programming error: the table and the handlers disagree
            raise RuntimeError(
                f"actions without a handler: {missing}; handlers without an action: {extra}"
            )
        return {name: sides[spec.audience][name] for name, spec in ACTIONS.items()}

    # --- driver-side API ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every slice is cached somewhere (exact row counts known) and new
        epochs read the newest snapshot."""
        with self._lock:
            return self._ready_locked()

    def _ready_locked(self) -> bool:
        return self.registry.ready and (self._consumers.current_snapshot() == self.snapshots.newest)

    def wait_ready(self, timeout: float) -> bool:
        """Block until every slice is cached somewhere.

        Args:
            timeout: seconds to wait at most.

        Returns:
            Whether the feeder is ready.

        Raises:
            FeederError: the table cannot fit in the nodes' caches (the message has the
                numbers); known once every slot's node has registered, before those
                nodes finish caching.
        """
        with self._ready:
            nodes = self._nodes
            ready = self._ready.wait_for(
                lambda: self._ready_locked() or nodes.capacity_error is not None, timeout=timeout
            )
            if nodes.capacity_error is not None and not self.registry.ready:
                raise FeederError(nodes.capacity_error)
            return ready

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Block until ``predicate(status())`` holds (re-checked on every node event).

        Args:
            predicate: a test of the status document.
            timeout: seconds to wait at most.

        Returns:
            Whether the predicate held before the timeout.
        """
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
        """Declare a node dead (its Spark job failed or ended); its slices move on.

        Args:
            node_id: the node's id (idempotent: a node already dead changes nothing).
            reason: why, for the log.
        """
        with self._ready:
            moved = self.registry.mark_dead(node_id)
            self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.nodes_lost.inc()
        self._nodes.publish_nodes()
        log.warning(
            "data node %s lost (%s); %d uncached slices handed to other nodes",
            node_id,
            reason,
            len(moved),
        )

    def add_snapshot(self, served: ServedSnapshot) -> dict[str, Any]:
        """Serve ``served`` (a newer snapshot of the table) to each job's next epoch.

        Slices of data files it shares with a live snapshot keep their ids and caches;
        the nodes cache only its new slices (told with their next heartbeat). Jobs
        mid-epoch finish on the snapshot they read; once no job's current epoch reads an
        older snapshot, it is retired and the slices only it held are dropped.

        Args:
            served: the new snapshot, planned like the first (same table, projection,
                filter and slice size).

        Returns:
            The refresh's record (as in the status document's ``refreshes``).

        Raises:
            SpecError: its schema differs from the served one.
            ValueError: it is already served.
        """
        with self._ready:
            previous = self.snapshots.newest
            added = self.snapshots.add(served)
            sizes = [cache_budget(p.estimated_bytes, row_copy=self.row_copy) for p in added.new]
            ids = self.registry.add_slices(sizes)
            if ids != [p.slice_id for p in added.new]:  # a programming error
                raise RuntimeError(f"registry ids {ids} disagree with the new slices")
            self._nodes.announce(added)
            change = self._consumers.journal_changed()
            record = {
                "from_snapshot_id": _snapshot_id(previous),
                "snapshot_id": served.snapshot_id,
                "slices": len(added.served.plans),
                "kept_slices": added.kept,
                "added_slices": ids,
            }
            self._refreshes.append(record)
            del self._refreshes[:-REFRESHES_KEPT]
            self._ready.notify_all()
        self._consumers.wait_journal(change)  # a restart now serves the new snapshot too
        if self.metrics is not None:
            self.metrics.refreshes.inc()
            self.metrics.ready.set(0)
        log.info(
            "refresh to snapshot %s: %d slices kept (cached), %d new slices to cache",
            served.snapshot_id,
            added.kept,
            len(ids),
        )
        return self._refresh_record(record)

    def _refresh_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A refresh's status entry: its storage bytes and readiness as of now."""
        reg = self.registry
        added = record["added_slices"]
        return {
            **{k: v for k, v in record.items() if k != "added_slices"},
            "added_slices": len(added),
            "slices_cached": sum(1 for s in added if reg.row_counts[s] is not None),
            "storage_bytes_read": sum(reg.storage_bytes[s] for s in added),
        }

    def _retire_unused(self) -> None:
        """Retire every snapshot older than the current one that no job's current epoch
        reads; tell the nodes to drop the slices only it held (the caller holds the lock)."""
        current = self._consumers.current_snapshot()
        if current is None:
            return
        keys = self.snapshots.live()
        used = self._consumers.books.snapshots_in_use()
        for key in keys[: keys.index(current)]:
            if key in used:
                continue
            dropped = self.snapshots.retire(key)
            self.registry.drop(dropped)
            self._nodes.announce_retired(key, dropped)
            self._consumers.journal_changed()
            log.info("snapshot %s retired: %d slices dropped from the caches", key, len(dropped))
        if self.metrics is not None:
            self.metrics.set_snapshot(_snapshot_id(current))

    def request_stop(self) -> None:
        """Tell every node to stop at its next heartbeat (and refuse new ones)."""
        with self._lock:
            self._nodes.request_stop()

    def close(self) -> None:
        """Stop the monitor thread and the Flight server (nodes are not told: see request_stop)."""
        self._closed.set()
        self.shutdown()
        self._monitor.join(timeout=5)
        self._consumers.close()  # the journal's last write, after the last call

    def status(self) -> dict[str, Any]:
        """Return the status document (PROTOCOL.md, *Status document*)."""
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> dict[str, Any]:
        reg = self.registry
        nodes = []
        for node in reg.nodes.values():
            entry = node.to_dict()
            entry["heartbeats"] = self._nodes.heartbeats(node.node_id)
            nodes.append(entry)
        snaps = self.snapshots
        current = self._consumers.current_snapshot()
        newest = snaps.members(snaps.newest)
        newest_ready = reg.ready_for(newest)
        return {
            "version": STATUS_VERSION,
            "session": self.signer.session_id,
            "endpoint": self.endpoint,
            "table": self.served.table,
            "snapshot_id": _snapshot_id(current if current is not None else snaps.newest),
            "row_filter": self.served.row_filter,
            "columns": list(self.served.schema.names),
            "ready": reg.ready and current == snaps.newest,
            "slices": len(newest),
            "slices_cached": sum(1 for s in newest if reg.row_counts[s] is not None),
            "rows": sum(reg.row_counts[s] or 0 for s in newest) if newest_ready else None,
            "bytes_cached": sum(n["cache_bytes"] for n in nodes if n["alive"]),
            "storage_bytes_read": sum(n["storage_bytes_read"] for n in nodes),
            "nodes_alive": len(reg.alive()),
            "nodes": nodes,
            "jobs": self._consumers.jobs_status(),
            "snapshots": [
                {
                    "snapshot_id": _snapshot_id(key),
                    "slices": len(snaps.members(key)),
                    "ready": reg.ready_for(snaps.members(key)),
                    "current": key == current,
                }
                for key in snaps.live()
            ],
            "refreshes": [self._refresh_record(r) for r in self._refreshes],
        }

    def _watch_nodes(self) -> None:
        while not self._closed.wait(self.heartbeat_seconds):
            with self._ready:
                if len(self.snapshots.live()) > 1:  # a refresh: retire what no job reads
                    self._consumers.books.sweep()
                    self._retire_unused()
                silent = self.registry.expire()
                if silent:
                    self._ready.notify_all()
            for node_id in silent:
                log.warning("data node %s silent for too long; declared dead", node_id)
                if self.metrics is not None:
                    self.metrics.nodes_lost.inc()

    # --- Flight handlers ------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        """Return every action of the protocol's table as ``(name, description)``.

        Args:
            context: the Flight call (unused: anyone may list).

        Returns:
            One pair per action, consumer and node actions alike.
        """
        return [(name, spec.description) for name, spec in ACTIONS.items()]

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Static mode: the caller's share of an epoch as signed tickets, in delivery order.

        Args:
            context: the Flight call.
            descriptor: a command descriptor holding a ``StaticRequest``.

        Returns:
            One endpoint per slice range (signed ticket, live node locations).

        Raises:
            flight.FlightServerError: a bad request (code ``invalid_argument``).
            flight.FlightUnavailableError: the feeder is not ready yet.
        """
        return self._guard("flight_info", lambda: self._consumers.flight_info(context, descriptor))

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        """Answer one JSON action of the protocol's table (:mod:`feeder.protocol.actions`).

        A node action's proof is checked before its handler runs.

        Args:
            context: the Flight call.
            action: the action's name and JSON body.

        Returns:
            One result: the answer as a JSON document.

        Raises:
            flight.FlightServerError: an unknown action or a bad body (``invalid_argument``),
                a limit reached (``limit``).
            flight.FlightInternalError: a failure the server logged under the error id it names.
            flight.FlightUnauthenticatedError: a node action without a valid proof.
            flight.FlightUnavailableError: not now (not ready, stopping, no live node).
            flight.FlightUnauthorizedError: a ticket of another job or snapshot.
        """
        kind = action.type
        handler = self._handlers.get(kind)
        if handler is None:
            self._count_error("unknown_action")
            raise wire_error(
                ErrorCode.INVALID_ARGUMENT,
                f"unknown action {kind[:64]!r}; known: {sorted(ACTIONS)}",
            )
        body = action.body.to_pybytes() if action.body is not None else b""

        def answer() -> dict[str, Any]:
            if ACTIONS[kind].audience is Audience.NODE:
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
        """Return the schema a job reading the command's ``columns`` gets (ready or not).

        Args:
            context: the Flight call.
            descriptor: a command descriptor holding a ``StaticRequest``.

        Returns:
            The projected schema.

        Raises:
            flight.FlightServerError: a bad request or an unknown column (``invalid_argument``).
        """

        def answer() -> flight.SchemaResult:
            if descriptor.descriptor_type != flight.DescriptorType.CMD:
                raise SpecError("only command descriptors are served")
            request = StaticRequest.from_command(bytes(descriptor.command or b""))
            return flight.SchemaResult(self.served.project(request.columns))

        return self._guard("schema", answer)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> Any:
        """Refuse: the coordinator serves no rows, tickets go to the data nodes.

        Raises:
            flight.FlightServerError: always (code ``invalid_argument``).
        """
        self._count_error("do_get")
        raise wire_error(
            ErrorCode.INVALID_ARGUMENT,
            "the coordinator serves no data; send tickets to a data node",
        )

    # --- guards -------------------------------------------------------------------------------

    def _act_status(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        return self.status()

    def _act_refresh(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``refresh``: serve the table's current snapshot to each job's next epoch."""
        if self.refresher is None:
            raise flight.FlightUnavailableError(
                "this coordinator cannot refresh: it was started without a table to follow"
            )
        return self.refresher()

    def _count_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(kind=kind).inc()

    def _guard(self, kind: str, fn: Callable[[], Any]) -> Any:
        """Run a handler; every refusal becomes a coded Flight error (counted), never a crash.

        An unexpected exception is logged with its traceback under an error id;
        the caller gets the id, never the traceback (:mod:`feeder.protocol.wire_errors`).
        """
        start = time.perf_counter()
        try:
            return fn()
        except Exception as exc:
            self._count_error(kind)
            raise to_wire(exc, kind, log) from None
        finally:
            if self.metrics is not None:
                elapsed = time.perf_counter() - start
                self.metrics.request_seconds.labels(call=kind).observe(elapsed)


def _registry(
    snapshots: LiveSnapshots,
    *,
    slots: int,
    node_timeout: float,
    clock: Callable[[], float],
    row_copy: bool,
) -> NodeRegistry:
    """The registry of every slice id ``snapshots`` handed out; ids no live snapshot
    holds (retired before a restart) are dropped: never placed."""
    plans = snapshots.plans
    count = snapshots.slice_count
    sizes = [
        cache_budget(plans[s].estimated_bytes, row_copy=row_copy) if s in plans else 0
        for s in range(count)
    ]
    registry = NodeRegistry(
        count, slots=slots, node_timeout=node_timeout, clock=clock, slice_sizes=sizes
    )
    registry.drop(s for s in range(count) if s not in plans)
    return registry


def _snapshot_id(key: int) -> int | None:
    """The status document's snapshot id of a snapshot key (None: a table without one)."""
    return None if key == NO_SNAPSHOT else key
