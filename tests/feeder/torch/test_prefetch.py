"""Prefetcher: a background thread a bounded number of items ahead (pure: no feeder)."""

from __future__ import annotations

import threading

import pytest

from feeder.torch.prefetch import Prefetcher
from jobs.errors import FeederError


def test_prefetcher_yields_everything_in_order():
    with Prefetcher(iter(range(100)), 3) as items:
        assert list(items) == list(range(100))


def test_prefetcher_reraises_the_source_error():
    def source():
        yield 1
        raise FeederError("coordinator at grpc://x unreachable")

    items = Prefetcher(source(), 2)
    assert next(items) == 1
    with pytest.raises(FeederError, match="unreachable"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_prefetcher_close_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = Prefetcher(endless(), 2)
    assert next(items) == 0
    items.close()
    assert closed.wait(5)
    assert not items._thread.is_alive()


def test_prefetcher_weight_bounds_the_queued_batches():
    groups = [[i] * (1 + i % 3) for i in range(40)]  # groups of 1..3 "batches"
    items = Prefetcher(iter(groups), 4, weight=len)
    got = []
    for group in items:
        assert items._queued <= 4 - 1 + 3  # an item enters only below the bound
        got.append(group)
    assert got == groups


def test_prefetcher_on_end_runs_in_the_thread_before_the_end_is_seen():
    seen: list[tuple[str, int]] = []
    consumed: list[int] = []
    items = Prefetcher(
        iter(range(5)),
        2,
        on_end=lambda p: seen.append((threading.current_thread().name, len(consumed))),
    )
    for item in items:
        consumed.append(item)
    assert consumed == list(range(5))
    assert len(seen) == 1 and seen[0][0] == "feeder-prefetch"


class _Tracked:
    """Records which thread frees it."""

    def __init__(self, name: str, freed_by: dict[str, str]) -> None:
        self.name = name
        self._freed_by = freed_by

    def __del__(self) -> None:
        self._freed_by[self.name] = threading.current_thread().name


def test_prefetcher_frees_retired_items_in_its_thread_keeping_the_latest():
    freed_by: dict[str, str] = {}
    release = [threading.Event() for _ in range(3)]

    def source():
        for i, gate in enumerate(release):
            assert gate.wait(10)
            yield _Tracked(f"item{i}", freed_by)

    items = Prefetcher(source(), 1)
    release[0].set()
    items.retire(next(items))  # item0: kept, the consumer may still hold its last batch
    release[1].set()
    items.retire(next(items))  # item1 retired: item0 is now freed by the thread...
    release[2].set()
    last = next(items)  # ...before item2 is handed over
    assert freed_by == {"item0": "feeder-prefetch"}
    items.retire(last)
    items.close()  # close drops whatever is left
    del last
    assert set(freed_by) == {"item0", "item1", "item2"}


def test_a_claimed_read_ahead_does_not_give_up_when_idle():
    idle = Prefetcher(iter(range(10)), 1, max_idle=0.2)
    idle._thread.join(10)  # its read-ahead thread ends when it gives up
    assert idle.expired and not idle.claim()
    idle.close()

    kept = Prefetcher(iter(range(10)), 1, max_idle=0.2)
    assert kept.claim()
    # an unclaimed twin started after it gives up: kept's queue was full as long
    twin = Prefetcher(iter(range(10)), 1, max_idle=0.2)
    twin._thread.join(10)
    assert twin.expired
    twin.close()
    assert list(kept) == list(range(10)) and not kept.expired
