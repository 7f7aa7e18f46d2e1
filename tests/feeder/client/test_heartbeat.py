"""The lease heartbeat thread: it outlives any refusal, and a restarted feeder ends its leases.

The coordinator is a stand-in here (a function answering ``heartbeat`` calls), named
as such: what is under test is the thread's reaction to each answer; the real
coordinator's answers are covered in tests/feeder/coordinator/test_liveness.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from feeder.client.heartbeat import LeaseHeartbeater
from feeder.protocol.messages import LeaseRequest
from jobs.errors import FeederError, LimitError, RestartedError, SpecError

REQUEST = LeaseRequest(job="j", epoch=0, consumer="c")


def _until(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition with a deadline, not a timing assumption
    return bool(check())


def test_the_heartbeat_thread_survives_every_icefeed_error():
    answers: list[Any] = [SpecError("bad"), LimitError("full"), FeederError("down")]
    calls: list[dict[str, Any]] = []
    answered = threading.Event()

    def fake_coordinator(name: str, body: Any) -> Any:
        assert name == "heartbeat"
        calls.append(body)
        if answers:
            raise answers.pop(0)
        answered.set()
        return {"lost": ["a"], "why": "no rows delivered for 3 lease times"}

    beat = LeaseHeartbeater(fake_coordinator, REQUEST, join_timeout=5)
    beat.track("a", 0.15)
    beat.delivered("a", 10)
    try:
        assert answered.wait(10), "the thread died on a refusal"
        assert _until(lambda: beat.is_lost("a"))
        assert all(c["progress"] == {"a": 10} for c in calls[3:])
    finally:
        beat.stop()


def test_a_restarted_feeder_loses_every_tracked_lease():
    def restarted(name: str, body: Any) -> Any:
        raise RestartedError("the feeder was restarted")

    beat = LeaseHeartbeater(restarted, REQUEST, join_timeout=5)
    beat.track("a", 0.15)
    beat.track("b", 0.15)
    try:
        assert _until(lambda: beat.is_lost("a") and beat.is_lost("b"))
    finally:
        beat.stop()
