"""Short-circuit local reads: a co-located data node's cache files, mapped read-only.

When a data node's status entry names a local socket (``local_socket``, see
:mod:`feeder.node.local_server`) that this process can open — the node runs on
this host, or both mount the same node-local volume — a read of that node
sends the ticket and the token over the socket instead of calling ``do_get``.
The node checks them as ``do_get`` does and hands over its cache files as
read-only descriptors; this side maps them and reads the ranges with the same
code the node streams them with (:mod:`feeder.protocol.slice_rows`): the same
rows, in the same order, cut into the same batches — zero-copy in table order.

Anything else falls back to Flight, logged once per node and reason: no socket
advertised, a socket path this process cannot open (another host), a refusal.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from pydantic import SecretStr

from feeder.protocol.auth import bearer_value
from feeder.protocol.chunking import Chunking
from feeder.protocol.local_read import (
    VERSION,
    LocalRange,
    LocalReadError,
    close_all,
    recv_frame,
    send_frame,
)
from feeder.protocol.slice_rows import read_cache_file, select, ticket_rows
from feeder.protocol.window_gather import WindowSpec, window_stream

log = logging.getLogger(__name__)

#: how often an unknown location may trigger a fresh look at the nodes' sockets
REFRESH_SECONDS = 5.0
#: how long connecting and answering may take before the read goes over Flight
LOCAL_TIMEOUT = 30.0

#: ``sockets() -> {location: socket path}``: the live nodes' advertised local sockets
Sockets = Callable[[], Mapping[str, str]]


class LocalReads:
    """Reads tickets from co-located data nodes' cache files; thread-safe.

    Args:
        token: the bearer token (sent to the node, which checks it as Flight does).
        job: this client's job (the node checks each ticket was issued to it).
        sockets: the nodes' advertised sockets (asked again at most every
            ``REFRESH_SECONDS`` while a location is unknown).
    """

    def __init__(self, *, token: str | SecretStr | None, job: str, sockets: Sockets) -> None:
        self._bearer = bearer_value(token)
        self._job = job
        self._sockets = sockets
        self._lock = threading.Lock()
        self._listing = threading.Lock()
        self._known: dict[str, str] = {}
        self._asked_at: float | None = None
        self._unusable: set[tuple[str, str]] = set()  # (location, socket) that cannot be opened
        self._logged: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"LocalReads(job={self._job!r})"

    def socket_for(self, location: str) -> str | None:
        """Return the usable local socket of ``location``'s node, or None."""
        with self._lock:
            known = location in self._known
        if not known:
            with self._listing:  # one listing at a time: the others wait for its result
                self._refresh(location)
        with self._lock:
            path = self._known.get(location)
            if path is None or (location, path) in self._unusable:
                return None
            return path

    def _refresh(self, location: str) -> None:
        """List the nodes' sockets again, unless ``location`` is known by now or they were
        listed in the last ``REFRESH_SECONDS`` (the caller holds ``_listing``)."""
        with self._lock:
            now = time.monotonic()
            recent = self._asked_at is not None and now - self._asked_at <= REFRESH_SECONDS
            if location in self._known or recent:
                return
            self._asked_at = now
        try:
            known = dict(self._sockets())
        except Exception as exc:  # e.g. the coordinator is restarting: read over Flight
            self._note(location, "status", f"could not list local sockets ({exc})")
            return
        with self._lock:
            self._known = known

    def open(
        self,
        location: str,
        ticket: str,
        chunks: Chunking | None,
        windows: Sequence[WindowSpec] | None = None,
    ) -> Iterator[pa.RecordBatch] | None:
        """Read ``ticket`` (a ticket or a bundle) from ``location``'s cache files; with
        ``windows``, the bundle's pieces as whole MIX windows, ordered here as the node
        would order them (:mod:`feeder.protocol.window_gather`).

        Returns:
            The range(s)' batches, cut on ``chunks``'s grid (first range) as the node
            would cut them; None when the read must go over Flight (logged once per
            node and reason).
        """
        path = self.socket_for(location)
        if path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(LOCAL_TIMEOUT)
            try:
                sock.connect(path)
            except OSError as exc:  # cannot open the socket: not this host, or not allowed
                with self._lock:
                    self._unusable.add((location, path))
                self._note(location, "connect", f"cannot open its local socket {path} ({exc})")
                return None
            request = {"v": VERSION, "token": self._bearer, "job": self._job, "ticket": ticket}
            send_frame(sock, request)
            answer, fds = recv_frame(sock)
        except (OSError, LocalReadError) as exc:  # e.g. a slow answer: this read over Flight
            self._note(location, "exchange", f"local read failed ({exc})")
            return None
        finally:
            sock.close()
        try:
            if not answer.get("ok"):
                code = str(answer.get("code"))
                self._note(location, code, f"refused: {answer.get('error')} ({code})")
                return None
            tables = _map_files(answer, fds)
            ranges = [LocalRange.from_dict(r, job=self._job) for r in answer["ranges"]]
            batch_rows = int(answer["batch_rows"])
        except (LocalReadError, OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            self._note(location, "answer", f"sent an unusable answer ({exc})")
            return None
        finally:
            close_all(fds)
        if windows is not None:
            pieces = [(select(tables[r.file], r.claims.columns), r.claims) for r in ranges]
            return window_stream(
                pieces, windows, chunking=chunks or Chunking(), batch_rows=batch_rows
            )
        return _ranges(tables, ranges, chunks, batch_rows)

    def _note(self, location: str, reason: str, message: str) -> None:
        """Log once per node and reason that its reads go over Flight."""
        with self._lock:
            if (location, reason) in self._logged:
                return
            self._logged.add((location, reason))
        log.warning("data node %s: reading over Flight, not locally: %s", location, message)


def _map_files(answer: Mapping[str, Any], fds: list[int]) -> list[pa.Table]:
    """Map each handed-over file read-only and open it as a table (zero-copy)."""
    files = answer["files"]
    if len(files) != len(fds):
        raise LocalReadError(f"{len(files)} files named, {len(fds)} descriptors received")
    tables = []
    for described, fd in zip(files, fds, strict=True):
        size = os.fstat(fd).st_size
        if size != int(described["nbytes"]):  # mapping past a file's end is SIGBUS
            said = described["nbytes"]
            raise LocalReadError(f"slice {described['slice']}: {size} bytes, the node said {said}")
        mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        table, _ = read_cache_file(pa.BufferReader(pa.py_buffer(mapped)))
        tables.append(table)
    return tables


def _ranges(
    tables: list[pa.Table], ranges: list[LocalRange], chunks: Chunking | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The ranges' batches in order; the consumer's grid applies to the first range only."""
    hint = chunks or Chunking()
    for item in ranges:
        yield from ticket_rows(tables[item.file], item.claims, chunking=hint, batch_rows=batch_rows)
        hint = Chunking()
