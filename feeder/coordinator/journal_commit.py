"""Group commit for the coordinator's journal: many changes, one durable write.

Every ``lease``, ``heartbeat`` and ``done`` changes the epoch state. Writing the
whole state and fsyncing it on every call, under the coordinator's lock, would make
the journal's disk the ceiling of every consumer. Instead a handler, still under
the lock, notes that the state changed (:meth:`GroupCommit.changed` returns the
change's number); after it released the lock, and before its answer leaves, it
waits until a write that holds its change is durable (:meth:`GroupCommit.wait`).
One writer thread takes the state under the lock, writes it outside (temporary
file, fsync, rename) and releases every caller whose change it held, so calls that
arrive together share one write. An answer never leaves before the journal holds
what it reports: a restarted coordinator never forgets a lease a consumer was told
it holds, nor a ``done`` it acknowledged.

A write that fails (a full or read-only volume) is logged and the callers are
released: serving goes on, the restart guarantee is what is lost. So is a write
that takes longer than ``wait_seconds``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

log = logging.getLogger(__name__)

#: how long an answer waits for its journal write before it leaves anyway (logged)
WAIT_SECONDS = 10.0


class GroupCommit:
    """One writer thread that journals the latest state for every waiting change.

    Args:
        save: writes one state durably (``Journal.save``); may raise OSError.
        capture: returns the state to write; called with ``lock`` held.
        lock: the coordinator's lock (the one every change is made under).
        wait_seconds: how long :meth:`wait` waits before it gives up (logged).
    """

    def __init__(
        self,
        save: Callable[[Any], None],
        capture: Callable[[], Any],
        lock: AbstractContextManager[Any],
        *,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._save = save
        self._capture = capture
        self._lock = lock
        self.wait_seconds = wait_seconds
        mutex = threading.Lock()
        self._cond = threading.Condition(mutex)  # callers wait here for their write
        self._work = threading.Condition(mutex)  # the writer waits here for a change
        self._wanted = 0  # changes noted
        self._written = 0  # changes a finished write held
        self._closing = False
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="icefeed-journal", daemon=True)
        self._thread.start()

    def changed(self) -> int:
        """Note a change of the state (call with the coordinator's lock held); return its
        number for :meth:`wait`."""
        with self._cond:
            self._wanted += 1
            self._work.notify()  # only the writer: waking every waiting caller per change
            return self._wanted  # cost more than the handlers (measured under load)

    def wait(self, change: int) -> bool:
        """Wait (without the coordinator's lock) until change ``change`` is written.

        Returns:
            True once written; False after ``wait_seconds`` (logged: the answer leaves
            without it).
        """
        with self._cond:
            done = self._cond.wait_for(lambda: self._written >= change, self.wait_seconds)
        if not done:
            log.error(
                "journal write took over %.0f s: answering without it (a restart now may "
                "deliver some rows twice)",
                self.wait_seconds,
            )
        return done

    def close(self) -> None:
        """Write what is pending, then stop the writer thread."""
        with self._cond:
            self._closing = True
            self._work.notify()
        self._thread.join(self.wait_seconds)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._written >= self._wanted and not self._closing:
                    self._work.wait()
                if self._written >= self._wanted:  # closing, nothing pending
                    return
                target = self._wanted  # every change up to here was made under the lock
            with self._lock:
                state = self._capture()
            try:
                self._save(state)
                self.writes += 1
            except OSError as exc:
                log.error("journal not written (%s): a restart now loses epochs", exc)
            except Exception:  # never kill the writer: callers would wait out their timeout
                log.exception("journal not written: a restart now loses epochs")
            with self._cond:
                self._written = target
                self._cond.notify_all()
