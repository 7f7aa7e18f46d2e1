"""The coordinator's node side: ``register``, ``cached`` and ``node_heartbeat``.

Only the feeder's own data nodes call these (the coordinator checks each call's
node proof before a handler runs). Requests and answers are the typed messages
of :mod:`feeder.protocol.node_messages`; a malformed one is a SpecError, which
the coordinator's guard turns into an invalid-argument Flight error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.flight as flight

from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.registry import NodeRegistry
from feeder.coordinator.served import ServedSnapshot
from feeder.coordinator.snapshots import Added, LiveSnapshots
from feeder.protocol.node_messages import (
    CachedReport,
    NodeHeartbeat,
    NodeHeartbeatAnswer,
    RegisterAnswer,
    RegisterRequest,
    SnapshotSource,
)
from feeder.protocol.slice_plan import SlicePlan
from feeder.protocol.tickets import snapshot_key


@dataclass
class _Outbox:
    """A refresh's news for one node, delivered with its next heartbeat answer."""

    plans: list[SlicePlan] = field(default_factory=list)
    sources: list[SnapshotSource] = field(default_factory=list)
    drop: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)


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
        snapshots: LiveSnapshots,
        registry: NodeRegistry,
        ready: threading.Condition,
        metrics: FeederMetrics | None,
    ) -> None:
        self.served = served
        self.snapshots = snapshots
        self.registry = registry
        self.metrics = metrics
        self._ready = ready
        self._heartbeats: dict[str, int] = {}
        self._outbox: dict[str, _Outbox] = {}
        #: snapshots in each node's last heartbeat answer: it serves them from its next beat
        self._sent: dict[str, set[int]] = {}
        #: slices a refresh added (their storage bytes count as the refresh's)
        self.refreshed: set[int] = set()
        self._stopping = False
        #: why the table cannot be cached (no node has room for some slices), else None
        self.capacity_error: str | None = None
        #: called (under the lock) with the jobs a node says read from it since its last beat
        self.on_jobs_read: Callable[[Sequence[str]], None] = lambda jobs: None

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

    def announce(self, added: Added) -> None:
        """Tell every live node about a refreshed snapshot (the caller holds the lock)."""
        new = added.served
        source = SnapshotSource(
            snapshot_id=new.snapshot_id,
            metadata_location=new.metadata_location,
            slices=tuple(p.slice_id for p in added.new),
        )
        self.refreshed.update(source.slices)
        for node in self.registry.alive():
            box = self._outbox.setdefault(node.node_id, _Outbox())
            box.plans.extend(added.new)
            box.sources.append(source)

    def announce_retired(self, snapshot: int, dropped: list[int]) -> None:
        """Tell every live node that ``snapshot`` is retired and ``dropped`` slices are gone
        (the caller holds the lock)."""
        for node in self.registry.alive():
            box = self._outbox.setdefault(node.node_id, _Outbox())
            box.retired.append(snapshot)
            box.drop.extend(dropped)

    def nodes_serve(self, snapshot: int) -> bool:
        """Whether every live node serves ``snapshot`` (told of it and heartbeating since),
        so its tickets may go out (the caller holds the lock)."""
        for node in self.registry.alive():
            box = self._outbox.get(node.node_id)
            if box is not None and any(
                snapshot_key(s.snapshot_id) == snapshot for s in box.sources
            ):
                return False
            if snapshot in self._sent.get(node.node_id, ()):
                return False
        return True

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
                host=request.host,
            )
            self._heartbeats[request.node_id] = 0
            self.capacity_error = self._shortfall_message()
            if self.capacity_error is not None:
                log.error("%s", self.capacity_error)
            self._ready.notify_all()
            answer = self._register_answer(assigned)
        log.info(
            "data node %s registered at %s (slot %s, pid %s): %d slices assigned",
            request.node_id,
            request.location,
            slot,
            request.pid,
            len(assigned),
        )
        self.publish_nodes()
        return answer.to_dict()

    def _register_answer(self, assigned: list[int]) -> RegisterAnswer:
        """Every live snapshot and slice plan; each slice read by the oldest live snapshot
        holding it (the caller holds the lock)."""
        snaps = self.snapshots
        sources: list[SnapshotSource] = []
        plans: list[SlicePlan] = []
        listed: set[int] = set()
        for key in snaps.live():
            served = snaps.get(key)
            mine = sorted(snaps.members(key) - listed)
            listed.update(mine)
            plans.extend(snaps.plans[s] for s in mine)
            sources.append(
                SnapshotSource(
                    snapshot_id=served.snapshot_id,
                    metadata_location=served.metadata_location,
                    slices=tuple(mine),
                )
            )
        newest = snaps.get(snaps.newest)
        return RegisterAnswer(
            snapshot_id=newest.snapshot_id,
            metadata_location=newest.metadata_location,
            io_properties=newest.io_properties,
            row_filter=newest.row_filter,
            columns=newest.columns,
            plans=tuple(plans),
            assigned=tuple(assigned),
            sources=tuple(sources) if len(sources) > 1 else (),
        )

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
            self.registry.cached(
                report.node_id,
                report.slice_id,
                report.num_rows,
                report.nbytes,
                report.storage_bytes,
            )
            now_ready = self.registry.ready
            self._ready.notify_all()
            rows = sum(n or 0 for n in self.registry.row_counts)
        if now_ready and not was_ready:
            log.info("feeder ready: %d slices, %d rows cached", len(self.snapshots.plans), rows)
            if self.metrics is not None:
                self.metrics.ready.set(1)
        if self.metrics is not None and report.slice_id in self.refreshed:
            self.metrics.refresh_storage_bytes.inc(report.storage_bytes)
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
            self.on_jobs_read(beat.jobs)
            self._heartbeats[beat.node_id] = self._heartbeats.get(beat.node_id, 0) + 1
            box = self._outbox.pop(beat.node_id, _Outbox())
            self._sent[beat.node_id] = {snapshot_key(s.snapshot_id) for s in box.sources}
            self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.node_stats(beat.node_id, node.stats)
        return NodeHeartbeatAnswer(
            stop=False,
            assign=tuple(assign),
            plans=tuple(box.plans),
            sources=tuple(box.sources),
            drop=tuple(box.drop),
            retired=tuple(box.retired),
        ).to_dict()
