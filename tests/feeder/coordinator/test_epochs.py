"""EpochBooks (pure, fake clock): what is kept, what is dropped, and what a late caller hears."""

from __future__ import annotations

import pytest

from feeder.coordinator.epochs import EpochBooks
from feeder.coordinator.limits import CoordinatorLimits
from feeder.protocol.messages import EpochParams
from feeder.protocol.shuffle import SliceRange
from jobs.errors import LimitError, SpecError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _units() -> list[SliceRange]:
    return [SliceRange(0, 0, 10)]


def _finish(books: EpochBooks, job: str, epoch: int) -> None:
    entry = books.open(EpochParams(job=job, epoch=epoch), _units)
    lease = entry.book.lease("c")
    assert lease is not None and entry.book.done("c", lease.lease_id)


def test_finished_epochs_beyond_epochs_kept_are_dropped_and_answered_as_finished():
    books = EpochBooks(CoordinatorLimits(epochs_kept=2), lease_seconds=1.0, clock=Clock())
    for epoch in range(10):
        _finish(books, "j", epoch)
    assert len(books) <= 3
    gone = books.retired("j", 0)
    assert gone is not None and gone.finished
    with pytest.raises(SpecError, match="is finished"):
        books.open(EpochParams(job="j", epoch=0), _units)


def test_an_idle_book_is_dropped_after_idle_seconds_and_a_late_call_is_told_why():
    clock = Clock()
    books = EpochBooks(CoordinatorLimits(idle_seconds=60), lease_seconds=1.0, clock=clock)
    entry = books.open(EpochParams(job="j", epoch=0), _units)
    assert entry.book.lease("c") is not None  # then the consumer vanishes
    clock.now += 59
    books.sweep()
    assert books.get("j", 0) is entry
    clock.now += 60
    books.sweep()
    assert len(books) == 0
    with pytest.raises(SpecError, match="unfinished and without calls for 60 s"):
        books.get("j", 0)
    clock.now += 60
    books.sweep()  # a job without epochs, idle that long, is forgotten altogether
    assert books.status() == {}


def test_jobs_and_open_epochs_are_capped_with_a_limit_error():
    books = EpochBooks(
        CoordinatorLimits(max_jobs=2, max_open_epochs=1), lease_seconds=1.0, clock=Clock()
    )
    books.open(EpochParams(job="a", epoch=0), _units)
    books.open(EpochParams(job="b", epoch=0), _units)
    with pytest.raises(LimitError, match="max_jobs=2"):
        books.open(EpochParams(job="c", epoch=0), _units)
    with pytest.raises(LimitError, match="max_open_epochs=1"):
        books.open(EpochParams(job="a", epoch=1), _units)


def test_consumer_names_are_counted_but_only_consumers_kept_remembered():
    books = EpochBooks(CoordinatorLimits(consumers_kept=3), lease_seconds=1.0, clock=Clock())
    for k in range(100):
        books.note_consumer(EpochParams(job="j"), f"c{k}", "dynamic")
    assert books.status()["j"]["consumers"] == 100
    assert len(books._jobs["j"].consumers) == 3


def test_a_books_host_groups_survive_the_journal_and_locality_is_counted_per_job():
    books = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    entry = books.open(EpochParams(job="j", epoch=3), _units)
    entry.groups = (("h0", (0, 2)), ("h1", (1,)))
    books.note_rows("j", 100, 75)
    again = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    again.restore(books.state())
    restored = again.get("j", 3)
    assert restored is not None and restored.groups == entry.groups
    locality = books.status()["j"]["locality"]
    assert locality == {"rows_leased": 100, "rows_local": 75, "local_share": 0.75}
