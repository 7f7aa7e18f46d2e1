"""GroupCommit: changes made under a lock are durable in the real journal before the
callers that made them go on; calls that arrive together share writes."""

from __future__ import annotations

import json
import logging
import threading

from feeder.coordinator.journal import Journal
from feeder.coordinator.journal_commit import GroupCommit


def _journal(tmp_path) -> Journal:
    journal = Journal(tmp_path / "journal")
    journal.begin({"table": "t", "snapshot_id": 1})
    return journal


def _written(journal: Journal) -> int:
    return json.loads(journal.state_file.read_text())["books"]["n"]


def test_a_change_is_in_the_journal_file_when_its_wait_returns_and_writes_are_shared(tmp_path):
    journal = _journal(tmp_path)
    lock = threading.Lock()
    state = {"n": 0}
    commit = GroupCommit(journal.save, lambda: dict(state), lock)
    barrier = threading.Barrier(8)
    errors: list[str] = []

    def caller() -> None:
        barrier.wait()
        for _ in range(40):
            with lock:
                state["n"] += 1
                mine = state["n"]
                change = commit.changed()
            assert commit.wait(change)
            seen = _written(journal)  # the real file, read back
            if seen < mine:
                errors.append(f"change {mine} answered while the journal held {seen}")

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    commit.close()
    assert errors == []
    assert _written(journal) == 320
    assert 1 <= commit.writes < 320  # 8 callers at once share fsyncs


def test_a_failed_write_is_logged_and_releases_its_callers(tmp_path, caplog):
    lock = threading.Lock()

    def broken(state: object) -> None:
        raise OSError(28, "No space left on device")

    commit = GroupCommit(broken, lambda: {}, lock)
    with lock:
        change = commit.changed()
    assert commit.wait(change)  # released, not left waiting
    commit.close()
    assert any(
        "No space left" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )


def test_close_writes_what_is_pending(tmp_path):
    journal = _journal(tmp_path)
    lock = threading.Lock()
    state = {"n": 0}
    commit = GroupCommit(journal.save, lambda: dict(state), lock)
    with lock:
        state["n"] = 7
        commit.changed()
    commit.close()  # nobody waited: close still writes it
    assert _written(journal) == 7
