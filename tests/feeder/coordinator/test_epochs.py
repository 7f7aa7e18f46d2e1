"""EpochBooks (pure, fake clock): what is kept, what is dropped, and what a late caller hears."""

from __future__ import annotations

import pytest

from feeder.coordinator.epochs import EPOCH_SNAPSHOTS_KEPT, EpochBooks
from feeder.coordinator.limits import CoordinatorLimits
from feeder.protocol.messages import EpochParams, StaticRequest
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


def _read(books: EpochBooks, epoch: int, snapshot: int, *, rank: int, world_size: int = 2):
    """A static rank asks for ``epoch``'s plan (bound to ``snapshot`` by the first)."""
    if books.snapshot_of("j", epoch) is None:
        books.bind("j", epoch, snapshot)
    books.note_static_read(StaticRequest(job="j", epoch=epoch, rank=rank, world_size=world_size))


def test_a_snapshot_stays_in_use_while_a_lagging_rank_may_still_read_an_epoch_bound_to_it():
    books = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    _read(books, 0, snapshot=1, rank=0)
    _read(books, 0, snapshot=1, rank=1)
    # snapshot 2 arrives; rank 0 runs two epochs ahead, rank 1 still reads epoch 0
    _read(books, 1, snapshot=2, rank=0)
    _read(books, 2, snapshot=2, rank=0)
    assert books.snapshots_in_use() == {1, 2}
    # rank 1 moves to epoch 1 (bound to 2): nobody can read snapshot 1 any more
    _read(books, 1, snapshot=2, rank=1)
    assert books.snapshots_in_use() == {2}
    # the journal keeps who reads what: a restarted coordinator decides the same
    _read(books, 3, snapshot=3, rank=0)
    restored = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    restored.restore(books.state())
    assert restored.snapshots_in_use() == books.snapshots_in_use() == {2, 3}


def test_the_bindings_a_lagging_rank_needs_are_kept_and_a_forgotten_one_is_a_clear_error():
    books = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    _read(books, 0, snapshot=1, rank=1)
    for epoch in range(1, EPOCH_SNAPSHOTS_KEPT + 5):
        _read(books, epoch, snapshot=2, rank=0)
    assert books.snapshot_of("j", 0) == 1 and 1 in books.snapshots_in_use()
    # another world size (an elastic restart): the old ranks are gone
    _read(books, EPOCH_SNAPSHOTS_KEPT + 5, snapshot=2, rank=0, world_size=1)
    assert books.snapshots_in_use() == {2}
    _read(books, EPOCH_SNAPSHOTS_KEPT + 6, snapshot=2, rank=0, world_size=1)
    assert books.snapshot_of("j", 0) is None  # no one reads it: forgotten as before
    # a consumer that now asks for epoch 0 could read another snapshot than epoch 0 did
    with pytest.raises(SpecError, match=r"epoch 0: .*may have read snapshot\(s\) \[1\].*current"):
        books.check_unbound("j", 0, 2)
    with pytest.raises(SpecError, match=r"may have read snapshot\(s\) \[2\]"):
        books.check_unbound("j", 0, 1)  # forgotten epochs read both: either may be wrong
    books.check_unbound("j", EPOCH_SNAPSHOTS_KEPT + 7, 2)  # a new epoch
    restored = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    restored.restore(books.state())
    with pytest.raises(SpecError, match=r"may have read snapshot\(s\) \[1\]"):
        restored.check_unbound("j", 0, 2)


def test_a_forgotten_binding_of_the_only_snapshot_served_is_no_error():
    books = EpochBooks(CoordinatorLimits(), lease_seconds=1.0, clock=Clock())
    for epoch in range(EPOCH_SNAPSHOTS_KEPT + 4):
        _read(books, epoch, snapshot=1, rank=0, world_size=1)
    assert books.snapshot_of("j", 0) is None
    books.check_unbound("j", 0, 1)  # a new run of the job from epoch 0: as before


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
