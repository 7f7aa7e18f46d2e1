"""Which gRPC users (Flight servers and clients) a process has run, as seen after a fork.

gRPC is not fork-safe: a process forked from one that has used gRPC at all hangs
at its first gRPC call, often (measured with pyarrow's bundled gRPC: a child that
makes one Flight call after its parent made one and *closed* the client hung in
24 of 30 forks, and in 0 of 30 when the parent never called; setting
``GRPC_ENABLE_FORK_SUPPORT`` did not help, 23 of 30). gRPC's process-wide threads
outlive every client. DataLoader workers forked from a notebook that serves a
feeder, or from a training process whose dataset already read an epoch or asked
the coordinator for ``len()``, hang that way.

Servers (:class:`TrackedFlightServer`) and clients
(:func:`feeder.protocol.auth.connect`) register here. At a fork the child keeps a
snapshot of every gRPC user its parent ever started, open or since closed
(:func:`inherited`), so the consumer side can refuse to start gRPC there with an
error that says what to do; :func:`used` tells a process whether it is still
clean, so it can keep itself fork-safe (``FeederDataset.__len__`` asks the
coordinator from a forked child while its process is clean).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import pyarrow.flight as flight

_lock = threading.Lock()
_live: dict[int, tuple[weakref.ref[Any], str]] = {}  # id(obj) -> (obj, what it is)
_inherited: tuple[str, ...] = ()  # the parent's gRPC users at the fork that made this process
_used: dict[str, None] = {}  # every user this process started, in order (closed ones too)


def register(obj: Any, what: str) -> None:
    """Count ``obj`` as a live gRPC user described by ``what`` while it exists.

    Args:
        obj: a Flight client or server (held weakly).
        what: how an error message names it, e.g. ``"Flight client of grpc://h:1"``.
    """
    key = id(obj)
    ref = weakref.ref(obj, lambda _: _forget(key))
    with _lock:
        _live[key] = (ref, what)
        _used[what] = None


def unregister(obj: Any) -> None:
    """Stop counting ``obj`` (a server that was shut down)."""
    _forget(id(obj))


def _forget(key: int) -> None:
    with _lock:
        _live.pop(key, None)


def live() -> list[str]:
    """Return the descriptions of this process's live gRPC users."""
    with _lock:
        return [what for ref, what in _live.values() if ref() is not None]


def used() -> list[str]:
    """Return every gRPC user this process started (or inherited), open or closed.

    Empty means the process has never run gRPC, so a child forked from it may.
    """
    with _lock:
        return [*_inherited, *_used]


def inherited() -> tuple[str, ...]:
    """Return the gRPC users the parent this process was forked from had ever started.

    Empty when the parent never ran gRPC (or this process was not forked).
    """
    return _inherited


def _after_fork_in_child() -> None:
    global _inherited, _lock
    open_now = set(live())
    parent = [w if w in open_now else f"{w} (closed)" for w in _used]
    _inherited = tuple(dict.fromkeys([*_inherited, *parent]))  # each description once
    _live.clear()  # the parent's users; the child's own register anew
    _used.clear()
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


class TrackedFlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """A ``FlightServerBase`` that counts as a live gRPC user from start to ``shutdown``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register(self, f"{type(self).__name__} Flight server on port {self.port}")

    def shutdown(self) -> None:
        """Stop the server (and stop counting it)."""
        unregister(self)
        super().shutdown()
