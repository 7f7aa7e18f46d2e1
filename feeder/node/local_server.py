"""A data node's local socket: hands cached slice files to consumers on its own host.

The HDFS short-circuit read, for Arrow IPC cache files. The node listens on a
Unix stream socket in its local socket dir (``NodeSettings.local_dir``). A
consumer that can open that path sends a ``do_get`` ticket and the bearer token
(:mod:`feeder.protocol.local_read`); the node checks both exactly as ``do_get``
does (:meth:`feeder.node.datanode.DataNode.grant_local`) and answers with one
read-only descriptor per slice file and the ranges to read, or with a coded
refusal. The node stays up whatever a peer sends; each connection has its own
thread and a timeout.

Security: the socket file is created mode 0660 (owner and group of the node's
process) in a directory the operator controls; a peer's pid/uid/gid
(``SO_PEERCRED``) is logged with every refusal. A descriptor grants reading one
slice's cache file (every cached column of that slice) and nothing else: it is
opened ``O_RDONLY`` and the file is never written in place (a slice rewritten is a
new file renamed over the old name).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from feeder.node.cache import CachedSlice
from feeder.protocol.auth import BearerCheck
from feeder.protocol.local_read import (
    SOCKET_PREFIX,
    SOCKET_SUFFIX,
    VERSION,
    LocalRange,
    LocalReadError,
    peer_credentials,
    recv_frame,
    send_frame,
)
from feeder.protocol.tickets import TicketClaims
from feeder.protocol.wire_errors import error_code, to_wire
from jobs.errors import SpecError

log = logging.getLogger(__name__)

#: socket file mode: owner and group may connect (a consumer shares the node's uid or gid)
SOCKET_MODE = 0o660
#: how long one connection may take to send its request and take its answer
CONNECTION_TIMEOUT = 30.0

#: ``grant(job, ticket) -> [(cache entry, claims)]``: the node's ``do_get`` checks
Grant = Callable[[str | None, bytes], list[tuple[CachedSlice, TicketClaims]]]


class LocalReadServer:
    """Serves ``grant``'s cache files over a Unix socket at ``path`` until :meth:`close`.

    Args:
        path: the socket file to create (its directory must exist). Sockets of dead
            nodes in that directory are deleted first (:func:`sweep_dead_sockets`).
        grant: checks a request's ticket for a job and returns the entries to hand over.
        token: the bearer token consumers must send (None: none).
        batch_rows: the node's largest batch (consumers cut the same batches).

    Raises:
        OSError: the socket cannot be created at ``path``.
    """

    def __init__(
        self,
        path: Path,
        *,
        grant: Grant,
        token: str | SecretStr | None,
        batch_rows: int,
    ) -> None:
        self.path = Path(path)
        self._grant = grant
        self._check_token = BearerCheck(token)
        self._batch_rows = batch_rows
        sweep_dead_sockets(self.path.parent)
        # bound and listening under a temporary name first: a sweeper never finds this
        # node's socket under its real name refusing connections
        staging = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(staging))
            os.chmod(staging, SOCKET_MODE)
            self._sock.listen(64)
            os.replace(staging, self.path)
        except BaseException:
            self._sock.close()
            staging.unlink(missing_ok=True)
            raise
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="icefeed-local", daemon=True)
        self._thread.start()
        log.info("local reads on %s", self.path)

    def close(self) -> None:
        """Stop accepting and remove the socket file (connections being answered finish)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept loop
        except OSError:
            log.debug("local socket %s was not connected", self.path)
        self._sock.close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                log.exception("local socket %s: accept failed", self.path)
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="icefeed-local-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        """Answer one request on ``conn``, then close it."""
        with conn:
            conn.settimeout(CONNECTION_TIMEOUT)
            try:
                request, fds = recv_frame(conn)
            except LocalReadError as exc:
                if exc.code == "closed":  # a probe (sweep_dead_sockets of a starting node)
                    log.debug("local socket %s probed by %s", self.path, _peer(conn))
                else:
                    log.warning("local read from %s: bad request (%s)", _peer(conn), exc)
                return
            except OSError as exc:
                log.warning("local read from %s: bad request (%s)", _peer(conn), exc)
                return
            for fd in fds:  # a request carries none
                os.close(fd)
            try:
                granted = self._answer(request)
            except Exception as exc:  # every refusal goes back coded; the node stays up
                wire = to_wire(exc, "local read", log)
                code = error_code(wire)
                message = str(wire).split(". Detail:")[0]
                log.warning("local read from %s refused: %s", _peer(conn), message)
                refusal = {"v": VERSION, "ok": False, "code": code.value if code else "failed"}
                _send_quietly(conn, {**refusal, "error": message})
                return
            log.debug("local read from %s: %d range(s) granted", _peer(conn), len(granted))
            self._hand_over(conn, granted)

    def _answer(self, request: dict[str, object]) -> list[tuple[CachedSlice, TicketClaims]]:
        if request.get("v") != VERSION:
            raise SpecError(
                f"local read protocol version {request.get('v')!r} is not {VERSION}; "
                "use a client of this feeder's version"
            )
        token = request.get("token")
        self._check_token(token if isinstance(token, str) else None)
        job, ticket = request.get("job"), request.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise SpecError("a local read names no ticket")
        return self._grant(job if isinstance(job, str) else None, ticket.encode("ascii"))

    def _hand_over(
        self, conn: socket.socket, granted: list[tuple[CachedSlice, TicketClaims]]
    ) -> None:
        """Open each slice file read-only and send the descriptors with the ranges."""
        files: dict[int, int] = {}  # slice id -> index
        fds: list[int] = []
        answer_files: list[dict[str, int]] = []
        try:
            for entry, _ in granted:
                if entry.slice_id in files:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                if os.fstat(fd).st_size != entry.nbytes:  # rewritten since: not the granted file
                    raise OSError(f"cached slice {entry.slice_id} changed on disk; retry")
                files[entry.slice_id] = len(answer_files)
                answer_files.append({"slice": entry.slice_id, "nbytes": entry.nbytes})
            ranges = [LocalRange(file=files[c.slice_id], claims=c).to_dict() for _, c in granted]
            answer = {
                "v": VERSION,
                "ok": True,
                "batch_rows": self._batch_rows,
                "files": answer_files,
                "ranges": ranges,
            }
            send_frame(conn, answer, fds)
        except OSError as exc:
            log.warning("local read to %s failed: %s", _peer(conn), exc)
            _send_quietly(
                conn, {"v": VERSION, "ok": False, "code": "unavailable", "error": str(exc)}
            )
        finally:
            for fd in fds:
                os.close(fd)


def sweep_dead_sockets(directory: Path) -> list[Path]:
    """Delete the local read sockets under ``directory`` that nobody listens on any more
    (left by data nodes that were killed); return them.

    A live node's socket accepts the probe connection (closed at once, unanswered); a
    socket file whose process is gone refuses it.
    """
    swept = []
    for path in sorted(directory.glob(f"{SOCKET_PREFIX}*{SOCKET_SUFFIX}")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
                swept.append(path)
            except OSError as exc:  # not a socket, or not ours to probe: left alone
                log.debug("local socket %s not probed: %s", path, exc)
    if swept:
        log.info("removed %d local socket(s) of dead data nodes in %s", len(swept), directory)
    return swept


def _send_quietly(conn: socket.socket, message: dict[str, object]) -> None:
    """Send a refusal; a peer that already left is only logged."""
    try:
        send_frame(conn, message)
    except OSError as exc:
        log.debug("local read peer left before its refusal: %s", exc)


def _peer(conn: socket.socket) -> str:
    creds = peer_credentials(conn)
    if creds is None:
        return "a local peer"
    pid, uid, gid = creds
    return f"pid {pid} (uid {uid}, gid {gid})"
