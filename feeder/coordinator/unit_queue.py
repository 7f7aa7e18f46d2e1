"""The queued units of a lease book: in lease order, by host, each with its journal text.

Pure bookkeeping for :class:`feeder.coordinator.leases.LeaseBook`. A unit leaves
from the front (a consumer without a host, or whose host has no unit left) or from
the middle (the first unit of a consumer's host), both in O(1) amortised; an expired
lease's rest goes back to the front. The journal text of the whole queue is one
join of strings kept beside the units, as cheap as over a plain list.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain

from feeder.protocol.shuffle import SliceRange

#: the hosts that hold a unit (its slice's cache, or a MIX window's host group)
Homes = Callable[[SliceRange], Sequence[str]]


def unit_text(unit: SliceRange) -> str:
    """A unit's journal text, ``[slice_id,start,stop]``."""
    return f"[{unit.slice_id},{unit.start},{unit.stop}]"


class UnitQueue:
    """Units in lease order: the ones put back in front (newest first), then the rest.

    Every unit has a key that is never reused; a key met in an order or host deque
    whose unit already left is skipped then (lazy removal).
    """

    def __init__(self, units: Iterable[SliceRange] = (), homes: Homes | None = None) -> None:
        self._units: dict[int, SliceRange] = {}
        self._body_text: dict[int, str] = {}  # units never put back, in queue order
        self._front_text: dict[int, str] = {}  # units put back in front
        self._front: deque[int] = deque()  # keys of units put back, front-most first
        self._order: deque[int] = deque()  # keys of the other units, in order
        self._next_key = 0
        self._homes = homes
        self._by_host: dict[str, deque[int]] = {}  # host -> keys of its units, in order
        for unit in units:
            self.append(unit)

    @property
    def homes(self) -> Homes | None:
        """What the units are indexed by (None: no host index)."""
        return self._homes

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[SliceRange]:
        """The units in lease order."""
        front = (self._units[k] for k in self._front if k in self._units)
        return chain(front, (self._units[k] for k in self._body_text))

    def text(self) -> str:
        """The units' journal texts joined by commas, in lease order."""
        front = (self._front_text[k] for k in self._front if k in self._front_text)
        if not self._front_text:
            return ",".join(self._body_text.values())
        return ",".join(chain(front, self._body_text.values()))

    def _key(self, unit: SliceRange) -> int:
        key = self._next_key
        self._next_key += 1
        self._units[key] = unit
        return key

    def append(self, unit: SliceRange) -> None:
        """Queue ``unit`` last."""
        key = self._key(unit)
        self._body_text[key] = unit_text(unit)
        self._order.append(key)
        self._index(key, unit, front=False)

    def push_front(self, unit: SliceRange) -> None:
        """Queue ``unit`` first (and first of its hosts' units)."""
        key = self._key(unit)
        self._front_text[key] = unit_text(unit)
        self._front.appendleft(key)
        self._index(key, unit, front=True)

    def set_homes(self, homes: Homes | None) -> None:
        """Index the units by ``homes`` from now on (None: no host index)."""
        self._homes = homes
        self._by_host = {}
        if homes is not None:
            front = [k for k in self._front if k in self._units]
            for key in chain(front, self._body_text):
                self._index(key, self._units[key], front=False)

    def _index(self, key: int, unit: SliceRange, *, front: bool) -> None:
        if self._homes is None:
            return
        for host in self._homes(unit):
            keys = self._by_host.setdefault(host, deque())
            if front:
                keys.appendleft(key)
            else:
                keys.append(key)

    def pop(self, host: str | None = None) -> SliceRange:
        """Take the first unit ``host`` holds, else the first unit; IndexError when empty."""
        if not self._units:
            raise IndexError("pop from an empty unit queue")
        keys = self._by_host.get(host) if host is not None else None
        while keys:
            key = keys.popleft()
            if key in self._units:
                return self._take(key)
        for order in (self._front, self._order):
            while order:
                key = order.popleft()
                if key in self._units:
                    return self._take(key)
        raise AssertionError("a queued unit is in no order")  # unreachable

    def _take(self, key: int) -> SliceRange:
        if self._body_text.pop(key, None) is None:
            del self._front_text[key]
        return self._units.pop(key)
