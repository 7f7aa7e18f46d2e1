"""The lease heartbeater: reports a dynamic-mode consumer's progress on its leases.

A background thread sends ``heartbeat`` (PROTOCOL.md) every third of the lease
time with the rows delivered of each tracked lease, and remembers the leases the
coordinator says were lost (expired), so the consumer stops reading them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from feeder.protocol.messages import LeaseRequest
from jobs.errors import IcefeedError, RestartedError

log = logging.getLogger(__name__)

#: ``action(name, body) -> answer``: one coordinator action (raises an IcefeedError on failure).
Action = Callable[[str, Any], Any]


class LeaseHeartbeater:
    """Background ``heartbeat`` of one dynamic-mode consumer's leases.

    Args:
        action: runs one coordinator action and returns its decoded answer.
        request: the consumer's ``lease`` request (job, epoch, consumer name).
        join_timeout: seconds :meth:`stop` waits for the thread.
    """

    def __init__(self, action: Action, request: LeaseRequest, *, join_timeout: float) -> None:
        self._action = action
        self._request = request
        self._join_timeout = join_timeout
        self._lock = threading.Lock()
        self._progress: dict[str, int] = {}
        self._lost: set[str] = set()
        self._interval = 10.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, lease_id: str, lease_seconds: float) -> None:
        """Start reporting ``lease_id`` (heartbeats every third of the lease time)."""
        with self._lock:
            self._progress[lease_id] = 0
            self._interval = max(0.05, lease_seconds / 3)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="icefeed-lease-heartbeat", daemon=True
                )
                self._thread.start()

    def delivered(self, lease_id: str, rows: int) -> None:
        """Count rows of ``lease_id`` handed to the consumer."""
        with self._lock:
            if lease_id in self._progress:
                self._progress[lease_id] += rows

    def is_lost(self, lease_id: str) -> bool:
        """Return True once the coordinator said the lease expired."""
        with self._lock:
            return lease_id in self._lost

    def untrack(self, lease_id: str) -> None:
        """Stop reporting ``lease_id``."""
        with self._lock:
            self._progress.pop(lease_id, None)
            self._lost.discard(lease_id)

    def wait(self, seconds: float) -> None:
        """Wait before asking for a lease again (bounded to 5 s; wakes early on stop)."""
        self._stop.wait(max(0.01, min(seconds, 5.0)))

    def stop(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                progress = dict(self._progress)
            if not progress:
                continue
            body = {
                "job": self._request.job,
                "epoch": self._request.epoch,
                "consumer": self._request.consumer,
                "progress": progress,
            }
            try:
                answer = self._action("heartbeat", body)
            except RestartedError as exc:  # the old session's leases are gone: stop reading them
                log.warning("lease heartbeat: %s", exc)
                with self._lock:
                    self._lost.update(progress)
                continue
            except IcefeedError as exc:  # any refusal: the thread lives on, the lease may expire
                log.warning("lease heartbeat failed: %s", exc)
                continue
            lost = answer.get("lost", [])
            if lost and answer.get("why"):
                log.warning("lease(s) %s lost: %s", ", ".join(map(str, lost)), answer["why"])
            with self._lock:
                self._lost.update(lost)
