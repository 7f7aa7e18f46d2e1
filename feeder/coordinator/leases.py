"""Dynamic-mode work queue of one job's epoch: leases of slice ranges that expire.

Pure bookkeeping with an injectable clock; no sockets, no threads. The
coordinator keeps one :class:`LeaseBook` per (job, epoch) and guards it with
its own lock.

Guarantee (see PROTOCOL.md, *Dynamic mode*): a unit is leased to one consumer
at a time. A consumer reports rows delivered (``heartbeat``) and finally
``done``. A lease not renewed within ``lease_seconds`` expires and the rest of
its unit — from the last reported offset — goes back to the *front* of the
queue, so rows reported delivered are never handed out again and rows never
reported are handed out again (only the rows a dead consumer delivered after
its last heartbeat can be delivered twice). A lease whose delivered rows have
not moved for ``stall_seconds`` expires the same way even while its heartbeats
keep coming (a live consumer that stopped consuming); :meth:`LeaseBook.why_lost`
then says so to the consumer when it wakes.

Locality (docs/feeder.md, *Locality*): with ``homes`` (unit -> the hosts that hold
it), :meth:`LeaseBook.lease` hands a consumer that names its host the first queued
unit of that host, and only when its host has none left the first queued unit of
any host. Which consumer gets which unit changes; the units do not, so each row
is still leased once (and again only after a lease is lost, as above).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from feeder.coordinator.unit_queue import Homes, UnitQueue
from feeder.protocol.shuffle import SliceRange

__all__ = ["Homes", "Lease", "LeaseBook"]

_LOST_KEPT = 1024  # lease ids whose loss reason a book remembers


@dataclass(frozen=True, slots=True)
class Lease:
    """Unit ``unit`` leased to ``consumer`` until ``deadline``; ``delivered`` rows reported."""

    lease_id: str
    consumer: str
    unit: SliceRange
    deadline: float
    delivered: int = 0
    moved_at: float = 0.0  # when ``delivered`` last grew (or the lease was granted)

    @property
    def remaining(self) -> SliceRange | None:
        """The part of the unit not yet reported delivered (None when nothing is left)."""
        start = self.unit.start + self.delivered
        if start >= self.unit.stop:
            return None
        return SliceRange(self.unit.slice_id, start, self.unit.stop)


class LeaseBook:
    """The units of one epoch in delivery order, handed out as expiring leases."""

    def __init__(
        self,
        units: Iterable[SliceRange],
        *,
        lease_seconds: float,
        stall_seconds: float | None = None,
        id_prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
        homes: Homes | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds {lease_seconds} must be > 0")
        if stall_seconds is not None and stall_seconds < lease_seconds:
            raise ValueError(f"stall_seconds {stall_seconds} must be >= lease_seconds")
        self.lease_seconds = float(lease_seconds)
        self.stall_seconds = stall_seconds
        self.id_prefix = id_prefix  # e.g. the feeder session id, so lease ids name it
        self._lost: OrderedDict[str, str] = OrderedDict()  # recent lease id -> why it was lost
        self._clock = clock
        # the queued units (and their journal texts, kept beside them, as are the held
        # leases' below, so a journal write joins strings instead of encoding thousands
        # of small lists), by host when ``homes`` is set
        self._queue = UnitQueue((u for u in units if u.num_rows > 0), homes)
        self._lease_text: dict[str, str] = {}
        self._leases: dict[str, Lease] = {}
        self._held: dict[str, dict[str, None]] = {}  # consumer -> its lease ids, in lease order
        # no lease can expire before this time (a lower bound: deadlines and ``moved_at``
        # only move later), so a call before it skips the scan of every lease
        self._next_check = math.inf
        self._next_id = 0  # number of the next lease id
        self.total_rows = sum(u.num_rows for u in self._queue)
        self.rows_done = 0
        self.expiries = 0
        self.consumers: set[str] = set()
        self._consumers_text: str | None = None  # their journal text, until a new one comes

    # --- queries -------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True when every unit was acknowledged (nothing queued, nothing leased)."""
        return not self._queue and not self._leases

    def outstanding(self) -> list[Lease]:
        """The leases currently held, oldest first."""
        return list(self._leases.values())

    def queued(self) -> list[SliceRange]:
        """The units waiting for a consumer, in the order they will be leased."""
        return list(self._queue)

    # --- locality ------------------------------------------------------------------------

    def set_homes(self, homes: Homes | None) -> None:
        """Lease by host from now on with ``homes`` (None: in queue order only); the
        queued units are indexed again (call it when the placement changed)."""
        self._queue.set_homes(homes)

    # --- transitions -----------------------------------------------------------------

    def expire(self) -> list[Lease]:
        """Take back every lease whose deadline has passed; return them.

        The undelivered rest of each goes to the front of the queue (oldest
        lease first), so it is the next thing leased.
        """
        now = self._clock()
        if now < self._next_check:
            return []
        expired = [lease for lease in self._leases.values() if self._why_expired(lease, now)]
        for lease in reversed(expired):
            self._note_lost(lease.lease_id, self._why_expired(lease, now) or "expired")
            self._remove(lease)
            rest = lease.remaining
            self.rows_done += lease.delivered
            if rest is not None:
                self._push_front(rest)
        self.expiries += len(expired)
        self._next_check = min((self._earliest(x) for x in self._leases.values()), default=math.inf)
        return expired

    def _earliest(self, lease: Lease) -> float:
        """The soonest ``lease`` can expire if nothing else happens to it."""
        stall = self.stall_seconds
        return lease.deadline if stall is None else min(lease.deadline, lease.moved_at + stall)

    def _push_front(self, unit: SliceRange) -> None:
        self._queue.push_front(unit)

    def _add(self, lease: Lease) -> None:
        self._leases[lease.lease_id] = lease
        self._lease_text[lease.lease_id] = _lease_text(lease)
        self._held.setdefault(lease.consumer, {})[lease.lease_id] = None
        self._next_check = min(self._next_check, self._earliest(lease))

    def _remove(self, lease: Lease) -> None:
        del self._leases[lease.lease_id]
        del self._lease_text[lease.lease_id]
        held = self._held[lease.consumer]
        del held[lease.lease_id]
        if not held:
            del self._held[lease.consumer]

    def _why_expired(self, lease: Lease, now: float) -> str | None:
        if lease.deadline <= now:
            return f"expired: no heartbeat for {self.lease_seconds:g} s (lease_seconds)"
        stall = self.stall_seconds
        if stall is not None and now - lease.moved_at >= stall:
            return (
                f"stalled: its delivered rows did not move for {stall:g} s "
                f"({stall / self.lease_seconds:g} x lease_seconds) although heartbeats came; "
                "its rows were leased again"
            )
        return None

    def _note_lost(self, lease_id: str, why: str) -> None:
        self._lost[lease_id] = why
        while len(self._lost) > _LOST_KEPT:
            self._lost.popitem(last=False)

    def why_lost(self, lease_id: str) -> str | None:
        """Why lease ``lease_id`` was taken back (None: unknown, or not taken back recently)."""
        return self._lost.get(lease_id)

    def lease(self, consumer: str, host: str | None = None) -> Lease | None:
        """Lease the next unit to ``consumer`` on ``host``; None when the queue is empty
        for now.

        Expired leases are collected first, so a dead consumer's work is leased
        again before newer units. With ``homes`` and a ``host``, the next unit is the
        first queued one of that host, else the first queued one.
        """
        self.expire()
        if consumer not in self.consumers:
            self.consumers.add(consumer)
            self._consumers_text = None
        if not self._queue:
            return None
        unit = self._queue.pop(host)
        now = self._clock()
        lease = Lease(
            lease_id=f"{self.id_prefix}L{self._take_id()}",
            consumer=consumer,
            unit=unit,
            deadline=now + self.lease_seconds,
            moved_at=now,
        )
        self._add(lease)
        return lease

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def heartbeat(self, consumer: str, progress: Mapping[str, int]) -> list[str]:
        """Extend ``consumer``'s leases and record rows delivered per lease id.

        ``progress`` maps a lease id to rows delivered so far of that lease's
        unit (monotonic; clamped to the unit). Returns the ids in ``progress``
        that this consumer no longer holds (expired or unknown): the consumer
        must stop serving them. Raises ValueError for a negative count.
        """
        self.expire()
        now = self._clock()
        deadline = now + self.lease_seconds
        lost: list[str] = []
        for lease_id, rows in progress.items():
            if rows < 0:
                raise ValueError(f"rows delivered {rows} must be >= 0")
            lease = self._leases.get(lease_id)
            if lease is None or lease.consumer != consumer:
                lost.append(lease_id)
                continue
            delivered = max(lease.delivered, min(rows, lease.unit.num_rows))
            moved_at = now if delivered > lease.delivered else lease.moved_at
            self._leases[lease_id] = replace(
                lease, delivered=delivered, deadline=deadline, moved_at=moved_at
            )
            if delivered != lease.delivered:
                self._lease_text[lease_id] = _lease_text(self._leases[lease_id])
        for lease_id in self._held.get(consumer, ()):
            if lease_id not in progress:
                self._leases[lease_id] = replace(self._leases[lease_id], deadline=deadline)
        return lost

    def done(self, consumer: str, lease_id: str) -> bool:
        """Acknowledge lease ``lease_id`` of ``consumer``: its whole unit was delivered.

        Returns False (and changes nothing) if the lease is unknown, expired or
        someone else's — its rest may already be leased to another consumer.
        """
        lease = self._leases.get(lease_id)
        if lease is None or lease.consumer != consumer:
            return False
        self._remove(lease)
        self.rows_done += lease.unit.num_rows
        return True

    def release(self, consumer: str) -> int:
        """Give back every lease of ``consumer`` now (a clean consumer exit); return how many."""
        mine = [self._leases[i] for i in self._held.get(consumer, ())]
        for lease in reversed(mine):
            self._remove(lease)
            self.rows_done += lease.delivered
            rest = lease.remaining
            if rest is not None:
                self._push_front(rest)
        return len(mine)

    # --- journal (feeder.coordinator.journal) ------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return what a restarted coordinator needs to continue this book (JSON-able).

        Deadlines are left out: they are monotonic-clock times of this process.
        """
        return dict(json.loads(self.state_text()))

    def state_text(self) -> str:
        """Return :meth:`state` as JSON text, joined from the kept texts of its units and
        leases (what a journal write costs under the coordinator's lock)."""
        if self._consumers_text is None:
            self._consumers_text = json.dumps(sorted(self.consumers), separators=(",", ":"))
        queue = self._queue.text()
        leases = ",".join(self._lease_text.values())
        return (
            f'{{"queue":[{queue}],"leases":[{leases}],"next_id":{self._next_id},'
            f'"total_rows":{self.total_rows},"rows_done":{self.rows_done},'
            f'"expiries":{self.expiries},"consumers":{self._consumers_text}}}'
        )

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` of a book of the same epoch (a restarted coordinator).

        Every restored lease gets a fresh ``lease_seconds`` (its holder was cut off by
        the restart, not idle). Raises KeyError, TypeError or ValueError for a bad state.
        """
        now = self._clock()
        self._queue = UnitQueue(
            (SliceRange(int(s), int(a), int(b)) for s, a, b in state["queue"]),
            self._queue.homes,
        )
        self._lease_text = {}
        self._leases, self._held, self._next_check = {}, {}, math.inf
        for lease_id, consumer, slice_id, start, stop, delivered in state["leases"]:
            unit = SliceRange(int(slice_id), int(start), int(stop))
            deadline = now + self.lease_seconds
            self._add(Lease(str(lease_id), str(consumer), unit, deadline, int(delivered), now))
        self._next_id = int(state["next_id"])
        self.total_rows = int(state["total_rows"])
        self.rows_done = int(state["rows_done"])
        self.expiries = int(state["expiries"])
        self.consumers = {str(c) for c in state["consumers"]}
        self._consumers_text = None


def _lease_text(x: Lease) -> str:
    fields = [x.lease_id, x.consumer, x.unit.slice_id, x.unit.start, x.unit.stop, x.delivered]
    return json.dumps(fields, separators=(",", ":"))
