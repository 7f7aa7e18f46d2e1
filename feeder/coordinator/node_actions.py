"""The coordinator's node side: ``register``, ``cached`` and ``node_heartbeat``.

Only the feeder's own data nodes call these (the coordinator checks each call's
node proof before a handler runs). Requests and answers are the typed messages
of :mod:`feeder.protocol.node_messages`; a malformed one is a SpecError, which
the coordinator's guard turns into an invalid-argument Flight error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pyarrow.flight as flight

from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.registry import NodeRegistry
from feeder.coordinator.served import ServedSnapshot
from feeder.protocol.node_messages import (
    CachedReport,
    NodeHeartbeat,
    NodeHeartbeatAnswer,
    RegisterAnswer,
    RegisterRequest,
)

log = logging.getLogger(__name__)


class NodeActions:
    """The node handlers of one coordinator session; they share the coordinator's lock.

    Every state change notifies ``ready`` (the coordinator's condition), so
    ``Coordinator.wait_ready`` / ``wait_for`` re-check on each node event.
    """

    def __init__(
        self,
        served: ServedSnapshot,
        *,
        registry: NodeRegistry,
        ready: threading.Condition,
        metrics: FeederMetrics | None,
    ) -> None:
        self.served = served
        self.registry = registry
        self.metrics = metrics
        self._ready = ready
        self._heartbeats: dict[str, int] = {}
        self._stopping = False
        #: why the table cannot be cached (no node has room for some slices), else None
        self.capacity_error: str | None = None

    def handlers(
        self,
    ) -> dict[str, Callable[[flight.ServerCallContext, bytes], dict[str, Any]]]:
        """Return the node actions this side answers."""
        return {
            "register": self.register,
            "cached": self.cached,
            "node_heartbeat": self.node_heartbeat,
        }

    def request_stop(self) -> None:
        """Refuse new nodes and answer ``stop`` to every heartbeat (the caller holds the lock)."""
        self._stopping = True

    def heartbeats(self, node_id: str) -> int:
        """Return how many heartbeats ``node_id`` sent (the caller holds the lock)."""
        return self._heartbeats.get(node_id, 0)

    def publish_nodes(self) -> None:
        """Set the live-node gauge, if metrics are on."""
        if self.metrics is not None:
            with self._ready:
                alive = len(self.registry.alive())
            self.metrics.nodes_alive.set(alive)

    def register(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``register``: add the node to a slot; answer the plan and the slices to cache now
        (those of its slot that fit in its ``capacity_bytes``, see
        :class:`~feeder.coordinator.registry.NodeRegistry`).

        A registration that leaves slices no node has room for sets
        ``capacity_error`` (``wait_ready`` raises it); the node is still accepted.

        Raises:
            SpecError: a malformed request.
            ValueError: a node id already used or a slot out of range.
            flight.FlightUnavailableError: the feeder is stopping.
        """
        request = RegisterRequest.from_json(body)
        with self._ready:
            if self._stopping:
                raise flight.FlightUnavailableError("feeder is stopping")
            reg = self.registry
            slot = request.slot
            if slot is None:
                live_slots = {n.slot for n in reg.alive()}
                free = [s for s in range(reg.slots) if s not in live_slots]
                slot = free[0] if free else len(reg.nodes) % reg.slots
            assigned = reg.register(
                request.node_id,
                slot=slot,
                location=request.location,
                pid=request.pid,
                cache_dir=request.cache_dir,
                capacity=request.capacity_bytes,
                local_socket=request.local_socket,
            )
            self._heartbeats[request.node_id] = 0
            self.capacity_error = self._shortfall_message()
            if self.capacity_error is not None:
                log.error("%s", self.capacity_error)
            self._ready.notify_all()
        log.info(
            "data node %s registered at %s (slot %s, pid %s): %d slices assigned",
            request.node_id,
            request.location,
            slot,
            request.pid,
            len(assigned),
        )
        self.publish_nodes()
        served = self.served
        return RegisterAnswer(
            snapshot_id=served.snapshot_id,
            metadata_location=served.metadata_location,
            io_properties=served.io_properties,
            row_filter=served.row_filter,
            columns=served.columns,
            plans=served.plans,
            assigned=tuple(assigned),
        ).to_dict()

    def _shortfall_message(self) -> str | None:
        """Why the table cannot fit in the nodes' caches, with the numbers; else None.

        Known as soon as every slot has a live node (their capacities are known
        then), which is before those nodes finish caching: a registering node
        caches only what fits, so no node is asked for more than it has room for.
        The caller holds the lock.
        """
        reg = self.registry
        missing = reg.shortfall()
        if not missing:
            return None
        total = sum(reg.slice_sizes)
        live = reg.alive()
        caps = ", ".join(
            f"{n.node_id} (slot {n.slot}, {n.cache_dir}): "
            + ("unlimited" if n.capacity is None else f"{n.capacity:,}")
            for n in live
        )
        room = sum(n.capacity for n in live if n.capacity is not None)
        need = sum(reg.slice_sizes[s] for s in missing)
        return (
            f"the table cannot fit in the data nodes' caches: its {reg.num_slices} slices need "
            f"about {total:,} bytes of cache (Arrow IPC and any row copies, estimated from the "
            f"Parquet footers) and the {len(live)} nodes can cache {room:,} bytes in all "
            f"({caps}); {len(missing)} slices (about {need:,} bytes) fit on no node. "
            "Run more nodes (--nodes), give each a bigger cache volume "
            "(cache_dir, feeder.cache.sizeLimit, cache_capacity_bytes), or serve fewer "
            "columns or rows (columns, row_filter), or cache no row copies (--no-row-copy)"
        )

    def cached(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``cached``: record a slice a node cached and its exact row count; answer ``{}``.

        Raises:
            SpecError: a malformed report.
            ValueError: an unknown or dead node, an unknown slice, or a row count
                that differs from another node's.
        """
        report = CachedReport.from_json(body)
        with self._ready:
            was_ready = self.registry.ready
            self.registry.cached(report.node_id, report.slice_id, report.num_rows, report.nbytes)
            now_ready = self.registry.ready
            self._ready.notify_all()
            rows = sum(n or 0 for n in self.registry.row_counts)
        if now_ready and not was_ready:
            log.info("feeder ready: %d slices, %d rows cached", len(self.served.plans), rows)
            if self.metrics is not None:
                self.metrics.ready.set(1)
        return {}

    def node_heartbeat(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``node_heartbeat``: record the node's stats; answer new slices, or ``stop``.

        A node that is unknown or was declared dead is told to stop.

        Raises:
            SpecError: a malformed heartbeat.
        """
        beat = NodeHeartbeat.from_json(body)
        with self._ready:
            node = self.registry.nodes.get(beat.node_id)
            if self._stopping or node is None or not node.alive:
                return NodeHeartbeatAnswer(stop=True).to_dict()
            assign = self.registry.heartbeat(beat.node_id, beat.stats)
            self._heartbeats[beat.node_id] = self._heartbeats.get(beat.node_id, 0) + 1
            self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.node_stats(beat.node_id, node.stats)
        return NodeHeartbeatAnswer(stop=False, assign=tuple(assign)).to_dict()
