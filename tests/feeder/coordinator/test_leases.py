"""LeaseBook invariants (pure, fake clock): every row delivered exactly once, whatever happens."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.coordinator.leases import LeaseBook
from feeder.protocol.shuffle import SliceRange


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def units_of(sizes: list[int]) -> list[SliceRange]:
    return [SliceRange(i, 0, n) for i, n in enumerate(sizes)]


def rows_of(unit: SliceRange) -> list[tuple[int, int]]:
    return [(unit.slice_id, p) for p in range(unit.start, unit.stop)]


ops = st.lists(
    st.tuples(
        st.sampled_from(["lease", "progress", "done", "tick", "release"]),
        st.integers(0, 3),  # consumer
        st.integers(0, 50),  # rows / seconds
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=8), ops)
def test_every_row_is_delivered_exactly_once_with_expiries_and_deaths(sizes, operations):
    _check_exactly_once(sizes, operations, homes=None)


def _home(unit: SliceRange) -> tuple[str, ...]:
    # slices 0, 3, 6 on host h0; 1, 4, 7 on h1; 2, 5 on h1 and h2 (two cached copies)
    return (("h0",), ("h1",), ("h1", "h2"))[unit.slice_id % 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=8), ops)
def test_leasing_by_host_delivers_every_row_exactly_once(sizes, operations):
    _check_exactly_once(sizes, operations, homes=_home)


def _check_exactly_once(sizes, operations, homes):
    clock = FakeClock()
    book = LeaseBook(units_of(sizes), lease_seconds=10, clock=clock, homes=homes)
    held: dict[int, dict[str, int]] = {c: {} for c in range(4)}  # consumer -> lease -> rows
    units: dict[str, SliceRange] = {}
    delivered: Counter = Counter()

    def settle_expired() -> None:
        # a consumer whose lease expired delivered exactly what it reported
        live = {lease.lease_id for lease in book.outstanding()}
        for leases in held.values():
            for lease_id in [x for x in leases if x not in live]:
                unit = units[lease_id]
                delivered.update(
                    rows_of(
                        SliceRange(unit.slice_id, unit.start, unit.start + leases.pop(lease_id))
                    )
                )

    for op, consumer, n in operations:
        name = f"c{consumer}"
        if op == "lease":
            lease = book.lease(name, f"h{consumer}")  # consumer 3's host h3 holds nothing
            settle_expired()
            if lease is not None:
                held[consumer][lease.lease_id] = 0
                units[lease.lease_id] = lease.unit
        elif op == "progress" and held[consumer]:
            lease_id = sorted(held[consumer])[0]
            rows = min(units[lease_id].num_rows, held[consumer][lease_id] + n)
            held[consumer][lease_id] = rows
            lost = book.heartbeat(name, {lease_id: rows})
            assert lost == []  # reported before expiry: still held
            settle_expired()
        elif op == "done" and held[consumer]:
            lease_id = sorted(held[consumer])[0]
            assert book.done(name, lease_id)
            delivered.update(rows_of(units[lease_id]))
            del held[consumer][lease_id]
        elif op == "tick":
            clock.now += n / 4
            book.expire()
            settle_expired()
        elif op == "release":
            book.release(name)
            settle_expired()
    # survivors finish their leases, then one consumer drains the queue
    for consumer, leases in held.items():
        for lease_id in list(leases):
            assert book.done(f"c{consumer}", lease_id)
            delivered.update(rows_of(units[lease_id]))
    while (lease := book.lease("drain")) is not None:
        assert book.done("drain", lease.lease_id)
        delivered.update(rows_of(lease.unit))
    assert book.finished
    expected = Counter(r for u in units_of(sizes) for r in rows_of(u))
    assert delivered == expected


def test_a_consumer_leases_its_own_hosts_units_first_then_others_in_queue_order():
    book = LeaseBook(units_of([5] * 6), lease_seconds=5, clock=FakeClock(), homes=_home)
    taken = []
    while (lease := book.lease("a", "h1")) is not None:
        taken.append(lease.unit.slice_id)
    # h1 holds slices 1, 2, 4, 5 (2 and 5 also on h2): those first, then 0 and 3
    assert taken == [1, 2, 4, 5, 0, 3]


def test_a_unit_on_two_hosts_is_leased_once():
    book = LeaseBook(units_of([5] * 3), lease_seconds=5, clock=FakeClock(), homes=_home)
    first = book.lease("b", "h2")
    assert first is not None and first.unit.slice_id == 2
    assert [x.unit.slice_id for x in iter(lambda: book.lease("a", "h1"), None)] == [1, 0]


def test_an_expired_rest_goes_first_for_its_own_host():
    clock = FakeClock()
    book = LeaseBook(units_of([10] * 4), lease_seconds=5, clock=clock, homes=_home)
    lost = book.lease("a", "h0")
    assert lost is not None and lost.unit.slice_id == 0
    book.heartbeat("a", {lost.lease_id: 4})
    clock.now = 100
    other = book.lease("b", "h1")
    assert other is not None and other.unit.slice_id == 1  # h1's own work, not the rest
    again = book.lease("c", "h0")
    assert again is not None and again.unit == SliceRange(0, 4, 10)


def test_homes_set_later_and_restored_books_lease_by_host():
    clock = FakeClock()
    book = LeaseBook(units_of([5] * 6), lease_seconds=5, clock=clock)
    assert book.lease("a", "h2") is not None  # no homes yet: queue order (slice 0)
    twin = LeaseBook([], lease_seconds=5, clock=clock)
    twin.restore(book.state())
    twin.set_homes(_home)
    assert [x.unit.slice_id for x in iter(lambda: twin.lease("b", "h2"), None)] == [2, 5, 1, 3, 4]


def test_expired_rest_goes_first_and_starts_at_the_reported_offset():
    clock = FakeClock()
    book = LeaseBook(units_of([10, 10]), lease_seconds=5, clock=clock)
    first = book.lease("a")
    assert first is not None and first.unit == SliceRange(0, 0, 10)
    book.heartbeat("a", {first.lease_id: 4})
    clock.now = 100
    again = book.lease("b")
    assert again is not None and again.unit == SliceRange(0, 4, 10)
    assert book.expiries == 1
    assert book.heartbeat("a", {first.lease_id: 6}) == [first.lease_id]  # a lost it
    assert not book.done("a", first.lease_id)


def test_a_faster_consumer_takes_more_units():
    book = LeaseBook(units_of([5] * 6), lease_seconds=30, clock=FakeClock())
    taken = Counter()
    slow = book.lease("slow")
    while (lease := book.lease("fast")) is not None:
        taken["fast"] += 1
        book.done("fast", lease.lease_id)
    assert slow is not None and taken["fast"] == 5
    assert not book.finished
    assert book.done("slow", slow.lease_id) and book.finished


def test_heartbeat_extends_every_lease_of_the_consumer():
    clock = FakeClock()
    book = LeaseBook(units_of([3, 3]), lease_seconds=10, clock=clock)
    a, b = book.lease("c"), book.lease("c")
    assert a is not None and b is not None
    clock.now = 8
    book.heartbeat("c", {a.lease_id: 1})
    clock.now = 15
    assert book.expire() == []


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        LeaseBook([], lease_seconds=0)
    book = LeaseBook(units_of([3]), lease_seconds=1, clock=FakeClock())
    lease = book.lease("c")
    assert lease is not None
    with pytest.raises(ValueError):
        book.heartbeat("c", {lease.lease_id: -1})


def test_a_lease_stalled_for_stall_seconds_expires_despite_heartbeats():
    now = [0.0]
    book = LeaseBook(
        [SliceRange(0, 0, 100)], lease_seconds=1.0, stall_seconds=3.0, clock=lambda: now[0]
    )
    lease = book.lease("a")
    assert lease is not None
    assert book.heartbeat("a", {lease.lease_id: 40}) == []
    for _ in range(5):
        now[0] += 0.5
        assert book.heartbeat("a", {lease.lease_id: 40}) == []
    now[0] += 0.5  # 3 s since the rows last moved
    assert book.heartbeat("a", {lease.lease_id: 40}) == [lease.lease_id]
    assert "stalled" in (book.why_lost(lease.lease_id) or "")
    rest = book.lease("b")
    assert rest is not None and (rest.unit.start, rest.unit.stop) == (40, 100)


class ScanEveryCall(LeaseBook):
    """The book without its expiry shortcut: every call scans every lease."""

    def expire(self):  # type: ignore[no-untyped-def]
        self._next_check = -math.inf
        return super().expire()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=8), ops, st.sampled_from([None, 15.0, 30.0]))
def test_skipping_the_expiry_scan_changes_nothing(sizes, operations, stall):
    """The book skips its scan of every lease until the earliest time one can expire; a
    book that scans on every call makes the same leases, expiries and queue, step by step."""
    clock = FakeClock()
    fast, slow = (
        cls(units_of(sizes), lease_seconds=10, stall_seconds=stall, clock=clock)
        for cls in (LeaseBook, ScanEveryCall)
    )
    delivered: dict[str, int] = {}
    for op, consumer, n in operations:
        name = f"c{consumer}"
        mine = sorted(x.lease_id for x in fast.outstanding() if x.consumer == name)
        if op == "lease":
            assert fast.lease(name) == slow.lease(name)
        elif op == "progress" and mine:
            rows = delivered[mine[0]] = delivered.get(mine[0], 0) + n
            assert fast.heartbeat(name, {mine[0]: rows}) == slow.heartbeat(name, {mine[0]: rows})
        elif op == "done" and mine:
            assert fast.done(name, mine[0]) == slow.done(name, mine[0])
        elif op == "tick":
            clock.now += n / 4
            assert fast.expire() == slow.expire()
        elif op == "release":
            assert fast.release(name) == slow.release(name)
        assert fast.outstanding() == slow.outstanding()
        assert fast.queued() == slow.queued()
        assert (fast.expiries, fast.rows_done) == (slow.expiries, slow.rows_done)
        assert json.loads(fast.state_text()) == encoded(fast)


def encoded(book: LeaseBook) -> dict[str, object]:
    """The journal form of ``book``, encoded from what it holds (PROTOCOL.md, *Journal*)."""
    return {
        "queue": [[u.slice_id, u.start, u.stop] for u in book.queued()],
        "leases": [
            [x.lease_id, x.consumer, x.unit.slice_id, x.unit.start, x.unit.stop, x.delivered]
            for x in book.outstanding()
        ],
        "next_id": book._next_id,
        "total_rows": book.total_rows,
        "rows_done": book.rows_done,
        "expiries": book.expiries,
        "consumers": sorted(book.consumers),
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=8), ops)
def test_a_book_restored_from_its_journal_text_continues_the_same(sizes, operations):
    """A book restored from ``state_text`` holds the same queue, leases (with what they
    delivered) and counts, and hands out the same next leases."""
    clock = FakeClock()
    book = LeaseBook(units_of(sizes), lease_seconds=10, clock=clock)
    for op, consumer, n in operations:
        name = f"c{consumer}"
        mine = [x for x in book.outstanding() if x.consumer == name]
        if op == "lease":
            book.lease(name)
        elif op == "progress" and mine:
            book.heartbeat(name, {mine[0].lease_id: mine[0].delivered + n})
        elif op == "done" and mine:
            book.done(name, mine[0].lease_id)
        elif op == "tick":
            clock.now += n / 4
            book.expire()
        elif op == "release":
            book.release(name)
    again = LeaseBook((), lease_seconds=10, clock=clock)
    again.restore(json.loads(book.state_text()))
    assert encoded(again) == encoded(book)
    assert [(x.lease_id, x.consumer, x.unit, x.delivered) for x in again.outstanding()] == [
        (x.lease_id, x.consumer, x.unit, x.delivered) for x in book.outstanding()
    ]
    assert [again.lease("new") for _ in range(3)] == [book.lease("new") for _ in range(3)]
