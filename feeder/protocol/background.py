"""Iterate on a thread of its own, a few items ahead of the caller.

A data node orders the next MIX window while gRPC sends this one; a consumer reads
the next window off the wire while its training loop takes this one. Both are an
iterator run :func:`ahead` of its caller: items pass through a bounded buffer, errors
surface in order, and closing the returned iterator stops the thread at its next item.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Buffer:
    """A bounded hand-over between one producer thread and one consumer: at most
    ``depth`` in summed weight (each item weighs 1 unless told), though an item always
    enters an empty buffer."""

    def __init__(self, depth: int) -> None:
        self._depth = depth
        self._items: deque[tuple[object, int]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: object, weight: int = 1) -> bool:
        """Add ``item`` once there is room; False (item dropped) once closed."""
        with self._cond:
            while not self.room(weight) and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._items.append((item, weight))
            self._queued += weight
            self._cond.notify_all()
            return True

    def room(self, weight: int = 1) -> bool:
        """Whether an item of ``weight`` may enter now (call with the lock held, or to look)."""
        return not self._items or self._queued + weight <= self._depth

    def get(self) -> object:
        """The next item, waiting for it."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, weight = self._items.popleft()
            self._queued -= weight
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Drop what is buffered and release the producer."""
        with self._cond:
            self.closed = True
            self._items.clear()
            self._queued = 0
            self._cond.notify_all()


def ahead(
    items: Iterable[T], *, depth: int, name: str, weight: Callable[[T], int] | None = None
) -> Iterator[T]:
    """Yield ``items`` in order, produced on a daemon thread ``name`` up to ``depth`` items
    ahead of the caller (with ``weight``: up to ``depth`` in summed weight, plus one item).
    An exception of ``items`` is raised where its item would have come; closing the
    returned iterator (or dropping it) stops the thread at its next item and closes
    ``items`` there.

    Raises ValueError for ``depth < 1``.
    """
    if depth < 1:
        raise ValueError(f"depth {depth} must be >= 1")
    buffer = _Buffer(depth)

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not buffer.put(item, weight(item) if weight is not None else 1):
                    return
            buffer.put(_END, 0)
        except BaseException as exc:  # handed to the caller, raised there in order
            buffer.put(exc, 0)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name=name, daemon=True).start()
    return _drain(buffer)


def _drain(buffer: _Buffer) -> Iterator[T]:
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        buffer.close()
