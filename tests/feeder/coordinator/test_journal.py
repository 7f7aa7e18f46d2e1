"""The coordinator's journal: the key and epoch state survive, damage is a clear error.

Real files in a temporary folder; the epoch state is that of real EpochBooks and
LeaseBooks, continued by new ones as a restarted coordinator would.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from feeder.coordinator.epochs import EpochBooks
from feeder.coordinator.journal import (
    KEY_NAME,
    STATE_NAME,
    VERSION,
    Journal,
    RecordedSnapshot,
    default_journal_dir,
)
from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.served import ServedSnapshot
from feeder.coordinator.snapshots import LiveSnapshots, plan_digest
from feeder.protocol.messages import EpochParams
from feeder.protocol.shuffle import SliceRange
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import TicketSigner
from jobs.errors import FeederError
from tests.feeder.coordinator.served_snapshots import served_snapshot

IDENTITY = {
    "table": "ns.t",
    "snapshot_id": 7,
    "columns": None,
    "row_filter": None,
    "slice_bytes": 1000,
    "plan_digest": "abc",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _books(clock: Clock, session: str) -> EpochBooks:
    return EpochBooks(CoordinatorLimits(), lease_seconds=10.0, clock=clock, session_id=session)


def _units() -> list[SliceRange]:
    return [SliceRange(s, 0, 100) for s in range(4)]


def test_a_restart_with_the_same_identity_gets_the_same_key_and_epoch_state(tmp_path):
    first = Journal(tmp_path / "j")
    started = first.begin(IDENTITY)
    assert started.books is None
    key_file = tmp_path / "j" / KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "key=<hidden>" in repr(started) and started.key.hex() not in repr(started)
    session = TicketSigner(started.key).session_id
    clock = Clock()
    books = _books(clock, session)
    params = EpochParams(job="j", epoch=3, seed=5, shuffle=Shuffle.SLICE)
    entry = books.open(params, _units)
    held = entry.book.lease("c1")
    entry.book.heartbeat("c1", {held.lease_id: 40})
    done = entry.book.lease("c2")
    assert entry.book.done("c2", done.lease_id)
    first.save(books.state())

    again = Journal(tmp_path / "j").begin(IDENTITY)  # the restarted driver
    assert again.key == started.key and again.books is not None
    clock.now = 5.0  # another process: another monotonic clock
    restored = _books(clock, session)
    restored.restore(again.books)
    book = restored.get("j", 3).book
    # the lease the first coordinator granted is still c1's, with its delivered rows
    (lease,) = book.outstanding()
    assert (lease.lease_id, lease.consumer, lease.delivered) == (held.lease_id, "c1", 40)
    assert lease.deadline == clock.now + 10.0  # a fresh lease time after the restart
    # a new lease id never repeats an old one, and every row is handed out once
    rows = {held.lease_id: held.unit, done.lease_id: done.unit}
    while (nxt := book.lease("c3")) is not None:
        assert nxt.lease_id not in rows
        rows[nxt.lease_id] = nxt.unit
        assert book.done("c3", nxt.lease_id)
    assert book.done("c1", held.lease_id)
    assert book.finished and book.rows_done == book.total_rows == 400
    assert sorted(u.slice_id for u in rows.values()) == [0, 1, 2, 3]
    # another seed for the same epoch is still refused after the restart
    with pytest.raises(Exception, match="seed=5"):
        restored.open(EpochParams(job="j", epoch=3, seed=6, shuffle=Shuffle.SLICE), _units)


def _recorded(journal: Journal, *, columns=None, snapshot_id=None):
    return journal.recorded(
        table="ns.t", columns=columns, row_filter=None, slice_bytes=1000, snapshot_id=snapshot_id
    )


def test_other_arguments_start_a_fresh_session_with_a_warning(tmp_path, caplog):
    started = Journal(tmp_path).begin(IDENTITY)
    journal = Journal(tmp_path)
    recorded = _recorded(journal)
    assert recorded is not None and recorded.identity == IDENTITY
    # a session that never refreshed: the identity's snapshot at its plan positions
    assert recorded.live == (RecordedSnapshot(snapshot_id=7, plan_digest="abc", slices=None),)
    assert _recorded(journal, snapshot_id=7) is not None  # pinned at the journal's snapshot
    assert _recorded(journal, snapshot_id=8) is None
    assert _recorded(journal, columns=["a"]) is None
    with caplog.at_level(logging.WARNING, logger="feeder.coordinator.journal"):
        fresh = journal.begin({**IDENTITY, "columns": ["a"]})
    assert fresh.key != started.key and fresh.books is None
    assert "columns: None -> ['a']" in caplog.text
    assert started.key.hex() not in caplog.text


def _served(snapshot_id: int, files: list[str]) -> ServedSnapshot:
    return served_snapshot(snapshot_id, [(f, (0,), False) for f in files])


def test_a_refreshed_session_journals_its_live_snapshots_and_their_slice_ids(tmp_path):
    journal = Journal(tmp_path)
    started = journal.begin(IDENTITY)
    live = LiveSnapshots(_served(7, ["a", "b", "c"]))
    live.add(_served(9, ["a", "c", "d"]))  # b removed, d added: slice ids 0, 2, 3
    journal.save({"jobs": {}, "books": []}, snapshots=live.state_text())
    assert json.loads((tmp_path / STATE_NAME).read_text())["version"] == VERSION == 2

    again = Journal(tmp_path)  # the restarted driver, with the same arguments
    recorded = _recorded(again)
    assert recorded is not None and recorded.identity == IDENTITY and recorded.slice_count == 4
    assert [(r.snapshot_id, r.slices) for r in recorded.live] == [(7, (0, 1, 2)), (9, (0, 2, 3))]
    # each recorded digest is the one planning the snapshot again gives
    assert recorded.live[1].plan_digest == plan_digest(_served(9, ["a", "c", "d"]).plans)
    resumed = again.begin(recorded.identity)
    assert resumed.key == started.key and resumed.books == {"jobs": {}, "books": []}


def test_a_version_1_journal_is_continued_unless_it_refreshed(tmp_path):
    key = os.urandom(32)
    (tmp_path / KEY_NAME).write_bytes(key)
    (tmp_path / KEY_NAME).chmod(0o600)
    v1 = {
        "format": "icefeed-feeder-journal",
        "version": 1,
        "session": TicketSigner(key).session_id,
        "identity": IDENTITY,
        "books": {"jobs": {}, "books": []},
    }
    (tmp_path / STATE_NAME).write_text(json.dumps(v1))
    recorded = _recorded(Journal(tmp_path))
    assert recorded is not None and recorded.slice_count is None
    assert recorded.live == (RecordedSnapshot(snapshot_id=7, plan_digest="abc", slices=None),)
    resumed = Journal(tmp_path).begin(recorded.identity)
    assert resumed.key == key and resumed.books == {"jobs": {}, "books": []}
    # version 1 marked a refreshed session instead of journalling its snapshots: fresh
    refreshed = {**v1, "identity": {**IDENTITY, "snapshot_id": 9, "refreshed": True}}
    (tmp_path / STATE_NAME).write_text(json.dumps(refreshed))
    assert _recorded(Journal(tmp_path)) is None


def test_damaged_live_snapshots_are_a_clear_error(tmp_path):
    journal = Journal(tmp_path)
    journal.begin(IDENTITY)
    journal.save(None, snapshots='{"slice_count":2,"live":[{"snapshot_id":7,"slices":[0]}]}')
    with pytest.raises(FeederError, match=r"damaged: its live snapshots do not parse"):
        _recorded(Journal(tmp_path))


def test_a_truncated_journal_is_a_clear_error_naming_the_file(tmp_path):
    journal = Journal(tmp_path)
    journal.begin(IDENTITY)
    journal.save({"jobs": {}, "books": []})
    state = tmp_path / STATE_NAME
    state.write_bytes(state.read_bytes()[:20])
    with pytest.raises(FeederError) as refused:
        Journal(tmp_path).begin(IDENTITY)
    assert str(tmp_path) in str(refused.value) and "not JSON" in str(refused.value)
    assert "start a fresh session" in str(refused.value)


def test_a_journal_of_another_version_names_both_versions(tmp_path):
    Journal(tmp_path).begin(IDENTITY)
    state = tmp_path / STATE_NAME
    data = json.loads(state.read_text())
    state.write_text(json.dumps({**data, "version": VERSION + 1}))
    with pytest.raises(FeederError, match=f"version {VERSION + 1}.*reads version {VERSION}"):
        Journal(tmp_path).begin(IDENTITY)


def test_a_damaged_key_or_mismatched_session_is_refused(tmp_path):
    Journal(tmp_path).begin(IDENTITY)
    (tmp_path / KEY_NAME).write_bytes(b"short")
    with pytest.raises(FeederError, match="holds 5 bytes, not 32"):
        Journal(tmp_path).begin(IDENTITY)
    (tmp_path / KEY_NAME).write_bytes(os.urandom(32))  # another session's key
    with pytest.raises(FeederError, match="is of session"):
        Journal(tmp_path).begin(IDENTITY)


def test_a_damaged_epoch_state_is_refused_by_the_books(tmp_path):
    books = _books(Clock(), "0123456789abcdef")
    with pytest.raises(KeyError):
        books.restore({"jobs": {}, "books": [{"job": "j"}]})


def test_writes_are_atomic_and_a_clean_stop_clears_the_journal(tmp_path):
    journal = Journal(tmp_path)
    journal.begin(IDENTITY)
    (tmp_path / f".{STATE_NAME}.999.tmp").write_text("half a wri")  # a crash mid-write
    again = Journal(tmp_path)
    assert again.begin(IDENTITY).books is None  # the whole old file stands
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / KEY_NAME).chmod(0o644)
    assert Journal(tmp_path).begin(IDENTITY) is not None
    assert stat.S_IMODE((tmp_path / KEY_NAME).stat().st_mode) == 0o600
    again.clear()
    assert not (tmp_path / STATE_NAME).exists() and not (tmp_path / KEY_NAME).exists()


def test_the_journal_lives_under_the_cache_dir_unless_given():
    assert default_journal_dir("/j", "/c").as_posix() == "/j"
    assert default_journal_dir(None, "/c").as_posix() == "/c/icefeed-journal"
    assert default_journal_dir(None, None) is None
