"""The coordinator's pure view of its data nodes: who is alive, who owns and caches which slice.

No sockets, no threads, an injectable clock; the coordinator guards one
:class:`NodeRegistry` with its lock.

Ownership is by *slot*: the launcher runs ``slots`` data nodes; an explicit
slice -> slot map (:attr:`NodeRegistry.owner`) starts as ``s % slots`` and node
slot ``k`` materialises the slices it owns right after ``register``. A replacement
node for a dead slot takes the slot over. Slices a dead node never cached are
handed to the least-loaded live node with room (delivered in its next
``node_heartbeat`` answer), so the feeder still becomes ready. Any live node can
serve any slice (it materialises on demand), so :meth:`locations` lists every
live node, the ones that cache the slice first.

Capacity: a node may report the bytes it can cache (``capacity``). Slices are
sized by their plan's ``estimated_bytes`` as cache bytes (``slice_sizes``, see
:func:`cache_budget`). A registering node keeps, in slice order, the owned slices
that fit; the rest lose their owner and go to live nodes with room (the one with
the most room, by heartbeat), or wait for a registering node with room. Once every
slot has a live node, slices no node has room for are a *shortfall*
(:meth:`NodeRegistry.shortfall`): the table does not fit. A node that reports no
capacity has unlimited room.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: cache bytes a node writes per ``estimated_bytes`` of a slice (Parquet's uncompressed
#: column bytes): an Arrow IPC file is a little larger (padding, offsets: 1.20 on the
#: test tables); a row copy of the fixed-width columns can double it (1.88 there).
IPC_BYTES_PER_ESTIMATED_BYTE = 1.25
ROW_COPY_FACTOR = 2


def cache_budget(estimated_bytes: int, *, row_copy: bool) -> int:
    """Return the cache bytes placement reserves on a node for a slice of ``estimated_bytes``.

    Args:
        estimated_bytes: the slice plan's ``estimated_bytes``.
        row_copy: whether nodes also cache a row-major copy (``NodeSettings.row_copy``).

    Returns:
        ``estimated_bytes`` x 1.25, doubled with row copies, rounded up.
    """
    factor = IPC_BYTES_PER_ESTIMATED_BYTE * (ROW_COPY_FACTOR if row_copy else 1)
    return math.ceil(estimated_bytes * factor)


STAT_KEYS = (
    "slices_cached",
    "cache_bytes",
    "storage_bytes_read",
    "rows_served",
    "rows_served_local",
    "rows_served_ordered",
    "rows_served_same_host",
    "bytes_served",
    "errors",
)


@dataclass
class NodeInfo:
    """One data node as the coordinator knows it."""

    node_id: str
    slot: int
    location: str
    pid: int | None
    cache_dir: str | None
    alive: bool = True
    last_seen: float = 0.0
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))
    pending: list[int] = field(default_factory=list)
    capacity: int | None = None  # bytes it can cache (None: unlimited)
    placed: set[int] = field(default_factory=set)  # slices it was asked to cache
    reserved: int = 0  # their cache bytes (by estimate)
    serving: bool = False  # set at its first heartbeat or cached report: it is configured
    local_socket: str | None = None  # its local read socket (None: Flight only)
    host: str | None = None  # the host it runs on (locality; None: not reported)

    def to_dict(self) -> dict[str, Any]:
        """The node's entry in the status document."""
        return {
            "node_id": self.node_id,
            "slot": self.slot,
            "location": self.location,
            "pid": self.pid,
            "alive": self.alive,
            "capacity_bytes": self.capacity,
            "local_socket": self.local_socket,
            "host": self.host,
            **self.stats,
        }


class NodeRegistry:
    """Data nodes, slice ownership, cached copies and exact row counts of one feeder session."""

    def __init__(
        self,
        num_slices: int,
        *,
        slots: int,
        node_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        slice_sizes: Sequence[int] | None = None,
    ) -> None:
        if num_slices < 0 or slots < 1 or node_timeout <= 0:
            raise ValueError(f"bad registry shape: {num_slices} slices, {slots} slots")
        sizes = list(slice_sizes) if slice_sizes is not None else [0] * num_slices
        if len(sizes) != num_slices or any(b < 0 for b in sizes):
            raise ValueError(f"slice_sizes must be {num_slices} sizes >= 0")
        self.num_slices = num_slices
        self.slots = slots
        self.node_timeout = node_timeout
        self._clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self.row_counts: list[int | None] = [None] * num_slices
        self.slice_bytes: list[int | None] = [None] * num_slices
        self.cached_by: list[list[str]] = [[] for _ in range(num_slices)]
        #: estimated bytes of each slice (what placement budgets with)
        self.slice_sizes = sizes
        #: the slot that caches each slice; None while no node has room for it
        self.owner: list[int | None] = [s % slots for s in range(num_slices)]
        #: storage bytes read to cache each slice the first time (0 until known)
        self.storage_bytes: list[int] = [0] * num_slices
        #: slices no live snapshot holds any more (a refresh retired them): never placed
        self.dropped: set[int] = set()
        #: grows whenever a node or a cached copy comes or goes (what locality indexes by)
        self.version = 0

    # --- queries -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every live slice's exact row count is known (each was cached once)."""
        return all(self.row_counts[s] is not None for s in self.live_slices())

    def exact_row_counts(self) -> list[int]:
        """Every slice's row count; raises ValueError before every slice is cached."""
        if any(n is None for n in self.row_counts):
            raise ValueError("row counts are known only once every slice is cached")
        return [int(n) for n in self.row_counts if n is not None]

    def ready_for(self, slices: Iterable[int]) -> bool:
        """True once every slice of ``slices`` was cached once."""
        return all(self.row_counts[s] is not None for s in slices)

    def live_slices(self) -> list[int]:
        """Every slice id not dropped."""
        return [s for s in range(self.num_slices) if s not in self.dropped]

    def _waiting(self, s: int) -> bool:
        """Whether slice ``s`` still has to be cached once (live and never cached)."""
        return self.row_counts[s] is None and s not in self.dropped

    def alive(self) -> list[NodeInfo]:
        """Live nodes in registration order."""
        return [n for n in self.nodes.values() if n.alive]

    def slot_slices(self, slot: int) -> list[int]:
        """The slices slot ``slot`` owns."""
        return [s for s, owner in enumerate(self.owner) if owner == slot and s not in self.dropped]

    def room(self, node: NodeInfo) -> float:
        """Bytes ``node`` can still be asked to cache (by estimate; inf without a capacity)."""
        if node.capacity is None:
            return float("inf")
        return node.capacity - node.reserved

    def shortfall(self) -> list[int]:
        """Uncached slices no node has room for, once every slot has a live node (else [])."""
        if {n.slot for n in self.alive()} != set(range(self.slots)):
            return []
        return [s for s, o in enumerate(self.owner) if o is None and self._waiting(s)]

    def locations(self, slice_id: int, near: str | None = None) -> list[str]:
        """Every live node's location for ``slice_id``: cachers first, then owners, then
        others; with ``near`` (a consumer's host), the cachers on that host before the
        other cachers (nearest first)."""
        self._check_slice(slice_id)
        live = [n for n in self.alive() if n.serving] or self.alive()
        cachers = [self.nodes[n] for n in self.cached_by[slice_id] if self.nodes[n] in live]
        if near is not None:
            cachers = [n for n in cachers if n.host == near] + [
                n for n in cachers if n.host != near
            ]
        owners = [n for n in live if n.slot == self.owner[slice_id] and n not in cachers]
        others = [n for n in live if n not in cachers and n not in owners]
        return [n.location for n in (*cachers, *owners, *others)]

    def host_of(self, location: str) -> str | None:
        """The host of the live node at ``location`` (None: unknown or not reported)."""
        for node in self.nodes.values():
            if node.location == location and node.alive:
                return node.host
        return None

    def slice_hosts(self, slice_id: int) -> tuple[str, ...]:
        """The hosts of the live nodes that cache ``slice_id`` (or, before any does, of
        its owner's live node), in :meth:`locations` order; empty when none reported one."""
        live = [self.nodes[n] for n in self.cached_by[slice_id] if self.nodes[n].alive]
        if not live:
            live = [n for n in self.alive() if n.slot == self.owner[slice_id]]
        hosts = (n.host for n in live if n.host is not None)
        return tuple(dict.fromkeys(hosts))

    # --- transitions -----------------------------------------------------------------

    def register(
        self,
        node_id: str,
        *,
        slot: int,
        location: str,
        pid: int | None = None,
        cache_dir: str | None = None,
        capacity: int | None = None,
        local_socket: str | None = None,
        host: str | None = None,
    ) -> list[int]:
        """Add a live node; return the slices it materialises now.

        Those are its slot's slices that fit in ``capacity`` (in slice order), then
        slices no node had room for that fit in what is left. Its slot's slices
        that do not fit go to other live nodes with room (by heartbeat) or wait for
        one (:meth:`shortfall`). It is listed as a location (before nodes that
        never reported) once it reports a heartbeat or a cached slice.

        Raises ValueError for an id already used, a slot out of range or a
        negative capacity.
        """
        if node_id in self.nodes:
            raise ValueError(f"node id {node_id!r} is already registered")
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} must be in [0, {self.slots})")
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacity {capacity} must be >= 0")
        node = NodeInfo(
            node_id,
            slot,
            location,
            pid,
            cache_dir,
            last_seen=self._clock(),
            capacity=capacity,
            local_socket=local_socket,
            host=host,
        )
        self.nodes[node_id] = node
        self.version += 1
        unplaced = [s for s, o in enumerate(self.owner) if o is None and self._waiting(s)]
        for s in (*self.slot_slices(slot), *unplaced):
            if self.slice_sizes[s] <= self.room(node):
                self.owner[s] = slot
                self._reserve(node, s)
            elif self.owner[s] == slot:
                self.owner[s] = None
        self._place_unplaced()
        return sorted(node.placed)

    def cached(
        self, node_id: str, slice_id: int, num_rows: int, nbytes: int, storage_bytes: int = 0
    ) -> None:
        """Record that ``node_id`` cached ``slice_id`` with ``num_rows`` rows, having read
        ``storage_bytes`` from table storage for it (0: adopted, or already counted).

        Raises ValueError for an unknown or dead node, an unknown slice, or a row
        count that differs from the one another node reported (the plan is
        deterministic, so that would be a bug).
        """
        node = self._live_node(node_id)
        self._check_slice(slice_id)
        if num_rows < 0 or nbytes < 0:
            raise ValueError("num_rows and nbytes must be >= 0")
        known = self.row_counts[slice_id]
        if known is not None and known != num_rows:
            raise ValueError(
                f"slice {slice_id}: node {node_id} cached {num_rows} rows, another {known}"
            )
        self.row_counts[slice_id] = num_rows
        self.slice_bytes[slice_id] = nbytes
        self.storage_bytes[slice_id] += storage_bytes
        if node_id not in self.cached_by[slice_id]:
            self.cached_by[slice_id].append(node_id)
            self.version += 1
        node.last_seen = self._clock()
        node.serving = True

    def heartbeat(self, node_id: str, stats: Mapping[str, Any]) -> list[int]:
        """Record a node's heartbeat and stats; return (and clear) slices newly assigned to it.

        Raises ValueError for an unknown or dead node (a node declared dead must stop).
        """
        node = self._live_node(node_id)
        node.last_seen = self._clock()
        node.serving = True
        for key in STAT_KEYS:
            value = stats.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                node.stats[key] = value
        pending, node.pending = node.pending, []
        return pending

    def mark_dead(self, node_id: str) -> list[int]:
        """Declare ``node_id`` dead; return the uncached slices handed to other live nodes.

        Idempotent: a node already dead (or unknown) changes nothing.
        """
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return []
        node.alive = False
        node.pending = []
        self.version += 1
        for holders in self.cached_by:
            if node_id in holders:
                holders.remove(node_id)
        return self._rehome()

    def expire(self) -> list[str]:
        """Declare dead every live node silent for over ``node_timeout`` s; return their ids."""
        now = self._clock()
        silent = [n.node_id for n in self.alive() if now - n.last_seen > self.node_timeout]
        for node_id in silent:
            self.mark_dead(node_id)
        return silent

    def _rehome(self) -> list[int]:
        """Give every uncached slice whose slot has no live node to the least-loaded live node
        with room (the slice keeps its slot: a replacement node caches it too)."""
        live = self.alive()
        if not live:
            return []
        covered = {n.slot for n in live}
        queued = {s for n in live for s in n.pending}
        moved: list[int] = []
        for s, owner in enumerate(self.owner):
            if not self._waiting(s) or owner is None:
                continue
            if owner in covered or s in queued:
                continue
            fits = [n for n in live if self.slice_sizes[s] <= self.room(n)]
            if not fits:
                continue  # waits for the slot's replacement
            target = min(fits, key=lambda n: len(n.placed))
            target.pending.append(s)
            self._reserve(target, s)
            moved.append(s)
        return moved + self._place_unplaced()

    def _place_unplaced(self) -> list[int]:
        """Hand each uncached slice without an owner to the live node with the most room
        for it (it becomes the slice's slot); return the slices handed out."""
        moved = []
        for s, owner in enumerate(self.owner):
            if owner is not None or not self._waiting(s):
                continue
            fits = [n for n in self.alive() if self.slice_sizes[s] <= self.room(n)]
            if not fits:
                continue
            target = max(fits, key=self.room)
            self.owner[s] = target.slot
            target.pending.append(s)
            self._reserve(target, s)
            moved.append(s)
        return moved

    def add_slices(self, sizes: Sequence[int]) -> list[int]:
        """Add slices of ``sizes`` cache bytes (a refresh's new slices); return their ids.

        Each goes to its slot's live node (``s % slots``) if it has room, else to the
        live node with the most room (both by heartbeat), else waits for a node.

        Raises ValueError for a negative size.
        """
        if any(b < 0 for b in sizes):
            raise ValueError("slice sizes must be >= 0")
        first = self.num_slices
        ids = list(range(first, first + len(sizes)))
        self.num_slices += len(sizes)
        self.row_counts.extend([None] * len(sizes))
        self.slice_bytes.extend([None] * len(sizes))
        self.cached_by.extend([] for _ in sizes)
        self.slice_sizes.extend(sizes)
        self.storage_bytes.extend([0] * len(sizes))
        self.owner.extend(s % self.slots for s in ids)
        live = {n.slot: n for n in self.alive()}
        for s in ids:
            node = live.get(s % self.slots)
            if node is None:
                continue  # the slot's (replacement) node takes it at register
            if self.slice_sizes[s] <= self.room(node):
                node.pending.append(s)
                self._reserve(node, s)
            else:
                self.owner[s] = None
        self._place_unplaced()
        return ids

    def drop(self, slice_ids: Iterable[int]) -> None:
        """Forget slices no live snapshot holds: never placed or listed again, their
        cache bytes no longer reserved on any node."""
        for s in slice_ids:
            self._check_slice(s)
            self.dropped.add(s)
            self.cached_by[s] = []
            for node in self.nodes.values():
                if s in node.placed:
                    node.placed.discard(s)
                    node.reserved -= self.slice_sizes[s]
                if s in node.pending:
                    node.pending.remove(s)

    def _reserve(self, node: NodeInfo, slice_id: int) -> None:
        """Record that ``node`` was asked to cache ``slice_id`` (once)."""
        if slice_id not in node.placed:
            node.placed.add(slice_id)
            node.reserved += self.slice_sizes[slice_id]

    def _live_node(self, node_id: str) -> NodeInfo:
        node = self.nodes.get(node_id)
        if node is None:
            raise ValueError(f"unknown node {node_id!r}: register first")
        if not node.alive:
            raise ValueError(f"node {node_id!r} was declared dead; it must stop")
        return node

    def _check_slice(self, slice_id: int) -> None:
        if not 0 <= slice_id < self.num_slices:
            raise ValueError(f"slice {slice_id} is not in [0, {self.num_slices})")
