"""How long the training loop waits for data: the figure a trainer cares about.

Wrap whatever the loop iterates (a DataLoader over a :class:`FeederDataset`, or the
dataset itself)::

    waits = DataWait()
    for batch in waits.wrap(loader):
        step(batch)
    log.info("%s", waits.summary())   # steps, data-wait seconds, share of wall time, p50/p99

A step's *wait* is the time from the end of the previous step (when the loop asks
for the next batch) to the batch's arrival; the first wait includes start-up
(worker start, the first plan) and is reported apart. With ``prometheus_registry``
each wait is also observed in a ``icefeed_consumer_data_wait_seconds`` histogram
(the ``metrics`` extra), for a training process that exports metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from jobs.errors import SpecError

__all__ = ["DataWait", "WaitSummary"]

T = TypeVar("T")

#: seconds buckets of the wait histogram: 0.1 ms .. 10 s
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_KEEP = 100_000  # waits kept for the percentiles (the most recent)


@dataclass(frozen=True)
class WaitSummary:
    """What :meth:`DataWait.summary` reports (seconds)."""

    steps: int
    first_wait: float
    wait: float
    wall: float
    p50: float
    p99: float

    @property
    def wait_fraction(self) -> float:
        """The share of the wall time (after the first batch) spent waiting for data."""
        return self.wait / self.wall if self.wall > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.steps} steps: waited {self.wait:.3f} s for data of {self.wall:.3f} s "
            f"({self.wait_fraction:.1%}; per step p50 {self.p50 * 1e3:.2f} ms, "
            f"p99 {self.p99 * 1e3:.2f} ms; first batch after {self.first_wait:.3f} s)"
        )


class DataWait:
    """Measures the training loop's wait for each batch of an iterable it wraps.

    Args:
        clock: a monotonic clock in seconds (``time.perf_counter``).
        prometheus_registry: a ``prometheus_client`` registry to observe every wait in
            (histogram ``icefeed_consumer_data_wait_seconds``), or None.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        prometheus_registry: Any = None,
    ) -> None:
        self._clock = clock
        self._waits: list[float] = []
        self._steps = 0
        self._first: float | None = None
        self._wait = 0.0
        self._start: float | None = None
        self._end: float | None = None
        self._histogram: Any = None
        if prometheus_registry is not None:
            from jobs.extras import require

            prom = require("prometheus_client", "metrics")
            self._histogram = prom.Histogram(
                "icefeed_consumer_data_wait_seconds",
                "time a training step waited for its batch",
                buckets=WAIT_BUCKETS,
                registry=prometheus_registry,
            )

    def wrap(self, batches: Iterable[T]) -> Iterator[T]:
        """Yield ``batches``' items, timing how long each took to arrive."""
        iterator = iter(batches)
        while True:
            asked = self._clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            arrived = self._clock()
            self._record(asked, arrived)
            yield item

    def _record(self, asked: float, arrived: float) -> None:
        waited = arrived - asked
        if waited < 0:
            raise SpecError("DataWait: the clock went backwards; pass a monotonic clock")
        self._steps += 1
        if self._first is None:
            self._first = waited
            self._start = arrived
        else:
            self._wait += waited
            self._waits.append(waited)
            if len(self._waits) > 2 * _KEEP:
                del self._waits[:_KEEP]
        self._end = arrived
        if self._histogram is not None:
            self._histogram.observe(waited)

    def summary(self) -> WaitSummary:
        """Return the waits so far (after the first batch; the first apart)."""
        ordered = sorted(self._waits)

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        wall = self._end - self._start if self._start is not None and self._end is not None else 0.0
        return WaitSummary(
            steps=self._steps,
            first_wait=self._first or 0.0,
            wait=self._wait,
            wall=wall,
            p50=pick(0.5),
            p99=pick(0.99),
        )
