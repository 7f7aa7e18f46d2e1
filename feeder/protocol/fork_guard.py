"""Which gRPC users (Flight servers, open Flight clients) a process runs, as seen after a fork.

gRPC is not fork-safe: a process forked while its parent runs a Flight server or
holds an open Flight client hangs at its first gRPC call (measured: DataLoader
workers forked from a notebook that serves a feeder, or from a training process
whose dataset already read an epoch, hang forever; after the parent closed its
clients they do not). Servers (:class:`TrackedFlightServer`) and clients
(:func:`feeder.protocol.auth.connect`) register here, weakly: a client that was
dropped or a server that was shut down no longer counts. At a fork the child keeps
a snapshot of its parent's live users (:func:`inherited`), so the consumer side can
refuse to start gRPC there with an error that says what to do.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import pyarrow.flight as flight

_lock = threading.Lock()
_live: dict[int, tuple[weakref.ref[Any], str]] = {}  # id(obj) -> (obj, what it is)
_inherited: tuple[str, ...] = ()  # the parent's live users at the fork that made this process


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


def inherited() -> tuple[str, ...]:
    """Return the live gRPC users of the parent this process was forked from (else empty)."""
    return _inherited


def _after_fork_in_child() -> None:
    global _inherited, _lock
    _inherited = tuple(dict.fromkeys(live()))  # each description once
    _live.clear()  # the parent's users; the child's own register anew
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
