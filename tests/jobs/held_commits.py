"""Force commit collisions in the real pyiceberg path: each writer's first catalog
commit waits at a barrier until every writer has built its snapshot on the same base.

The hook wraps ``catalog.commit_table`` (the call ``Table._do_commit`` makes after
pyiceberg built the snapshot and before the catalog's compare-and-swap); the real
commit runs unchanged once the barrier opens. Used in threads (one catalog) and in
separate processes (:func:`commit_in_process`, one catalog per process).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from jobs.commit import StagedWrite


class _Waits(Protocol):
    def wait(self, timeout: float | None = None) -> Any: ...


class HeldCommits:
    """Counts catalog commits and holds each thread's first one at ``barrier``."""

    def __init__(self, catalog: Catalog, barrier: _Waits) -> None:
        self.calls = 0
        self._barrier = barrier
        self._real = catalog.commit_table
        self._first = threading.local()
        self._lock = threading.Lock()
        catalog.commit_table = self._commit_table  # type: ignore[method-assign]

    def _commit_table(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        if not getattr(self._first, "done", False):
            self._first.done = True
            self._barrier.wait(120)
        return self._real(*args, **kwargs)


def commit_in_process(staged: StagedWrite, barrier: _Waits, results: Any) -> None:
    """Child process: commit ``staged`` to the embedded catalog with its commit held.

    Puts ``(run_id, already_committed, snapshot_id, rows, catalog commit calls)`` or
    ``("error", repr)`` on ``results``.
    """
    from jobs.catalog import load_catalog
    from jobs.commit import commit_staged

    try:
        catalog = load_catalog()
        held = HeldCommits(catalog, barrier)
        result = commit_staged(staged, catalog=catalog)
        results.put(
            (result.run_id, result.already_committed, result.snapshot_id, result.rows, held.calls)
        )
    except BaseException as exc:
        results.put(("error", repr(exc)))
        raise
