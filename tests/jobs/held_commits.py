"""Force commit collisions through icefeed's own seam: ``commit_staged(on_attempt=...)``.

Each writer's :class:`HeldAttempts` records every commit attempt ``commit_staged``
makes and holds the first one at a barrier until every writer has loaded the table:
all first attempts then build on the same base snapshot and commit against it with
the real pyiceberg and the real catalog, so all but one lose the race and only
icefeed's retry (attempt 1, 2, ...) can land them. Used in threads (one catalog) and
in separate processes (:func:`commit_in_process`, one catalog per process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jobs.commit import StagedWrite


class _Waits(Protocol):
    def wait(self, timeout: float | None = None) -> Any: ...


class HeldAttempts:
    """One writer's ``on_attempt`` hook: records each attempt, holds attempt 0 at ``barrier``."""

    def __init__(self, barrier: _Waits) -> None:
        self.attempts: list[int] = []
        self._barrier = barrier

    def __call__(self, attempt: int) -> None:
        self.attempts.append(attempt)
        if attempt == 0:
            self._barrier.wait(120)


def commit_in_process(staged: StagedWrite, barrier: _Waits, results: Any) -> None:
    """Child process: commit ``staged`` to the embedded catalog, its first attempt held.

    Puts ``(run_id, already_committed, snapshot_id, rows, attempts)`` or
    ``("error", repr)`` on ``results``.
    """
    from jobs.catalog import load_catalog
    from jobs.commit import commit_staged

    try:
        held = HeldAttempts(barrier)
        result = commit_staged(staged, catalog=load_catalog(), on_attempt=held)
        outcome = (result.run_id, result.already_committed, result.snapshot_id, result.rows)
        results.put((*outcome, held.attempts))
    except BaseException as exc:
        results.put(("error", repr(exc)))
        raise
