"""Run one gRPC exchange in a forked child, so the calling process stays fork-safe.

A process that has used gRPC cannot safely fork children that use it again
(:mod:`feeder.protocol.fork_guard`). A training script's main process must ask the
coordinator one thing before its DataLoader forks workers — ``len()`` of the
dataset — so it asks from a short-lived child instead: the child is forked while
the process is still clean, makes the call, sends back the (pickled) answer or
error and exits; the parent never starts gRPC.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from feeder.protocol import fork_guard
from jobs.errors import FeederError

T = TypeVar("T")


def can_fork_clean() -> bool:
    """Return True if this process may fork a child for gRPC: it can fork and never ran gRPC."""
    return hasattr(os, "fork") and not fork_guard.used()


def call_forked(fn: Callable[[], T], *, deadline: float, what: str) -> T:
    """Return ``fn()`` computed in a forked child, or raise the error it raised.

    Args:
        fn: the call; its result and errors must pickle.
        deadline: seconds to wait for the child's answer before killing it.
        what: the call's name, for error messages.

    Returns:
        What ``fn`` returned in the child.

    Raises:
        FeederError: the child gave no answer within ``deadline`` seconds or died.
        Exception: whatever ``fn`` raised in the child (re-raised here).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, leave without the parent's cleanup
        status = 0
        try:
            os.close(read)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:  # every error goes back to the parent
                payload = _error_payload(exc)
            with os.fdopen(write, "wb") as out:
                out.write(payload)
        except BaseException:  # a child never returns into the parent's code
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    try:
        data = _read_all(read, pid, deadline, what)
    finally:
        os.close(read)
        _reap(pid)
    if not data:
        raise FeederError(f"{what}: the helper process died without an answer; see its log above")
    ok, value = pickle.loads(data)
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _error_payload(exc: BaseException) -> bytes:
    try:
        pickle.loads(pickle.dumps(exc))  # some exceptions pickle but do not unpickle
        return pickle.dumps((False, exc))
    except Exception:  # fall back to the message
        return pickle.dumps((False, FeederError(f"{type(exc).__name__}: {exc}")))


def _read_all(fd: int, pid: int, deadline: float, what: str) -> bytes:
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise FeederError(
                    f"{what}: no answer from the feeder within {deadline:.0f} s; "
                    "check that the coordinator is up and reachable"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except BaseException:
        _kill(pid)
        raise


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
