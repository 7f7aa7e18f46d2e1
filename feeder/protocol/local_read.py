"""Short-circuit local reads: the wire between a data node and a consumer on its host.

A node with a local socket dir listens on a Unix stream socket there
(:mod:`feeder.node.local_server`); a consumer that can open that path (same host,
or a node-local volume both mount) reads the node's cached slices without gRPC
(:mod:`feeder.client.local_reads`). One request per connection::

    consumer → node   frame {"v":1,"token":str|null,"job":str,"ticket":str,"chunks":str|null}
    node → consumer   frame {"v":1,"ok":true,"batch_rows":n,
                             "files":[{"slice":id,"nbytes":n}, ...],
                             "ranges":[{"file":i,"slice":..,"start":..,"stop":..,"epoch":..,
                                        "seed":..,"shuffle":..,"block":..,"cols":..}, ...]}
                      + one open read-only descriptor per file (SCM_RIGHTS), in order
    or                frame {"v":1,"ok":false,"code":<ErrorCode value>,"error":str}

A frame is a 4-byte big-endian length and that many bytes of JSON. ``ticket`` is
a ``do_get`` ticket (one signed ticket or a bundle) and ``chunks`` the
``x-icefeed-chunks`` hint; the node checks token, tickets, job and snapshot
exactly as ``do_get`` does. The consumer maps each file read-only, reads the
ranges in order and applies their order exactly as the node would
(:mod:`feeder.protocol.slice_rows`), the hint on the first range only.
Descriptors travel in groups of at most :data:`FDS_PER_MESSAGE` (the kernel's
limit is 253 a message), each group attached to a part of the answer frame.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import MAX_BUNDLE_TICKETS, MAX_TICKET_BYTES, TicketClaims
from jobs.errors import FeederError

VERSION = 1
#: socket file name a node creates in its local socket dir: ``icefeed-<node id>-<pid>.sock``
SOCKET_PREFIX = "icefeed-"
SOCKET_SUFFIX = ".sock"
#: longest socket path a Unix socket can bind (``sun_path`` is 108 bytes with its NUL)
MAX_SOCKET_PATH = 107
#: descriptors attached to one message (the kernel's SCM_MAX_FD is 253)
FDS_PER_MESSAGE = 200
MAX_FRAME_BYTES = MAX_TICKET_BYTES * MAX_BUNDLE_TICKETS + 64 * 1024
_LENGTH = struct.Struct(">I")


class LocalReadError(FeederError):
    """A local read failed or was refused; ``code`` is the node's ErrorCode value
    (``"io"`` for a failure on this side)."""

    def __init__(self, message: str, code: str = "io") -> None:
        super().__init__(message)
        self.code = code


def socket_name(node_id: str, pid: int) -> str:
    """Return the socket file name of node ``node_id`` running as process ``pid``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)
    return f"{SOCKET_PREFIX}{safe}-{pid}{SOCKET_SUFFIX}"


@dataclass(frozen=True, kw_only=True)
class LocalRange:
    """One range of a local read answer: the claims of a verified ticket and its file."""

    file: int
    claims: TicketClaims

    def to_dict(self) -> dict[str, Any]:
        """The range's wire form (no job, no snapshot: the consumer needs neither)."""
        c = self.claims
        return {
            "file": self.file,
            "slice": c.slice_id,
            "start": c.start,
            "stop": c.stop,
            "epoch": c.epoch,
            "seed": c.seed,
            "shuffle": c.shuffle.value,
            "block": c.block_rows,
            "cols": list(c.columns) if c.columns is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, job: str) -> LocalRange:
        """Parse one answered range (raises KeyError, TypeError or ValueError if malformed)."""
        cols = data["cols"]
        claims = TicketClaims(
            job=job,
            snapshot_id=0,
            slice_id=int(data["slice"]),
            start=int(data["start"]),
            stop=int(data["stop"]),
            epoch=int(data["epoch"]),
            seed=int(data["seed"]),
            shuffle=Shuffle(data["shuffle"]),
            columns=tuple(str(c) for c in cols) if cols is not None else None,
            block_rows=int(data["block"]),
        )
        return cls(file=int(data["file"]), claims=claims)


def send_frame(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send ``message`` as one frame, ``fds`` attached in groups of FDS_PER_MESSAGE."""
    body = json.dumps(message, separators=(",", ":")).encode()
    data = _LENGTH.pack(len(body)) + body
    groups = [list(fds[i : i + FDS_PER_MESSAGE]) for i in range(0, len(fds), FDS_PER_MESSAGE)]
    # one byte of the frame per group at least: a frame names every file in ~20 bytes
    step = max(1, len(data) // max(1, len(groups)))
    offset = 0
    for k, group in enumerate(groups):
        end = len(data) if k == len(groups) - 1 else offset + step
        _send_all(sock, data[offset:end], group)
        offset = end
    if offset < len(data):
        _send_all(sock, data[offset:], [])


def _send_all(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sent = socket.send_fds(sock, [data], fds) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Receive one frame and the descriptors attached to it (the caller closes them).

    Raises:
        LocalReadError: the peer closed early, sent a frame too large or not a JSON
            object, or more descriptors than fit (cut off by the kernel).
    """
    fds: list[int] = []
    try:
        head = _recv_exact(sock, _LENGTH.size, fds, opening=True)
        (length,) = _LENGTH.unpack(head)
        if length > MAX_FRAME_BYTES:
            raise LocalReadError(f"a local read frame of {length} bytes is too large", "invalid")
        body = _recv_exact(sock, length, fds)
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise LocalReadError(f"a local read frame is not JSON ({exc})", "invalid") from exc
    except BaseException:
        close_all(fds)
        raise
    if not isinstance(message, dict):
        close_all(fds)
        raise LocalReadError("a local read frame is not a JSON object", "invalid")
    return message, fds


def _recv_exact(sock: socket.socket, size: int, fds: list[int], *, opening: bool = False) -> bytes:
    """Read exactly ``size`` bytes with recvmsg, collecting attached descriptors into ``fds``
    (every read takes ancillary data, so no descriptor is dropped). ``opening``: the first
    bytes of a frame (a peer that closes before them is code ``closed``)."""
    parts: list[bytes] = []
    left = size
    space = socket.CMSG_SPACE(FDS_PER_MESSAGE * array.array("i").itemsize)
    while left:
        data, ancillary, flags, _ = sock.recvmsg(left, space)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            raise LocalReadError("descriptors of a local read were cut off by the kernel")
        if not data:
            if opening and not parts:
                raise LocalReadError("the peer closed the local socket at once", "closed")
            raise LocalReadError("the peer closed the local socket mid-frame")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def close_all(fds: Sequence[int]) -> None:
    """Close received descriptors (each is this process's own copy)."""
    for fd in fds:
        os.close(fd)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """Return the peer's (pid, uid, gid) of a connected Unix socket (Linux), else None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid
