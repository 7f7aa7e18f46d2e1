"""``Prefetcher``: runs an iterator in a background thread, a bounded number of items ahead.

Used by :class:`feeder.torch.FeederDataset` to read and convert batches off the
training loop's path, and to open the next epoch's stream ahead of time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jobs.errors import FeederError, SpecError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _End:
    pass


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Prefetcher(Generic[_T]):
    """Run ``source`` in a background thread, ``depth`` items ahead of the consumer.

    Exceptions raised by ``source`` are re-raised in the consumer; :meth:`close`
    (or leaving a ``with`` block) stops the thread and closes the source within
    ``join_timeout`` seconds. With ``max_idle``, a prefetcher whose queue stays full
    that long gives up by itself (:attr:`expired`): for speculative read-ahead.
    With ``weight``, ``depth`` bounds the summed weight of the queued items instead
    of their number (an item always enters an empty queue). ``on_end(self)`` runs in
    the thread when ``source`` is exhausted, before the consumer sees the end.
    """

    def __init__(
        self,
        source: Iterator[_T],
        depth: int,
        *,
        join_timeout: float = 10.0,
        max_idle: float | None = None,
        weight: Callable[[_T], int] | None = None,
        on_end: Callable[[Prefetcher[_T]], None] | None = None,
    ) -> None:
        if depth < 1:
            raise SpecError(f"prefetch depth {depth} must be >= 1")
        self._depth = depth
        self._max_idle = max_idle
        self._weight = weight
        self._on_end = on_end
        self.expired = False
        self._source = source
        self._items: deque[tuple[Any, int]] = deque()
        self._spent: deque[object] = deque()  # consumed items the thread frees (retire)
        self._queued = 0  # summed weight of self._items
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._done = False
        self._thread = threading.Thread(target=self._run, name="feeder-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object, weight: int = 1) -> bool:
        self._free_spent()
        with self._cond:
            full_since: float | None = None
            while self._queued >= self._depth and not self._stop.is_set():
                self._cond.wait(0.1)
                self._free_spent()
                if self._max_idle is None or self._queued < self._depth:
                    continue
                now = time.monotonic()
                full_since = now if full_since is None else full_since
                if now - full_since >= self._max_idle:
                    self.expired = True
                    self._stop.set()
            if self._stop.is_set():
                return False
            self._items.append((item, weight))
            self._queued += weight
            self._cond.notify_all()
            return True

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item, self._weight(item) if self._weight else 1):
                    return
            if self._on_end is not None and not self._stop.is_set():
                self._on_end(self)
            self._put(_End())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def retire(self, item: object) -> None:
        """Hand back an item the consumer is done with, so that this thread, not the
        consumer, frees it (dropping a group of tensors costs ~0.1 ms of the consumer's
        time between steps). The most recently retired item is kept until the next one
        arrives: the consumer may still hold its last batch."""
        self._spent.append(item)

    def _free_spent(self) -> None:
        while len(self._spent) > 1:
            self._spent.popleft()

    def claim(self) -> bool:
        """Keep this read-ahead for a consumer: it no longer gives up when idle.

        Returns False if it already gave up (:attr:`expired`).
        """
        with self._cond:
            if self.expired:
                return False
            self._max_idle = None
            return True

    def __iter__(self) -> Prefetcher[_T]:
        return self

    def __next__(self) -> _T:
        if self._done:
            raise StopIteration
        with self._cond:
            while not self._items:
                if not self._thread.is_alive() and not self._items:
                    self._done = True
                    raise FeederError("prefetch thread ended without a result")
                self._cond.wait(0.5)
            item, weight = self._items.popleft()
            self._queued -= weight
            self._cond.notify_all()
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the thread, drop prefetched items, close the source."""
        self._done = True
        with self._cond:
            self._stop.set()
            self._items.clear()
            self._spent.clear()
            self._queued = 0
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.warning("prefetch thread still running %.0fs after close", self._join_timeout)

    def __enter__(self) -> Prefetcher[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
