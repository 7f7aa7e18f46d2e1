"""The node's local socket: the same checks as ``do_get``, read-only descriptors, stays up."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
from typing import Any

import pytest

from feeder.node.local_server import sweep_dead_sockets
from feeder.node.settings import NodeSettings
from feeder.node.task import _serve_local
from feeder.protocol.local_read import VERSION, close_all, recv_frame, send_frame
from feeder.protocol.tickets import TicketSigner, new_key
from tests.feeder.local_node import SLICE_ROWS, SNAPSHOT, TOKEN, CachedNode, cached_node


@pytest.fixture()
def node():
    with cached_node() as started:
        yield started


def ask(node: CachedNode, **fields: Any) -> tuple[dict[str, Any], list[int]]:
    """Send one raw local read request; return the answer and the descriptors."""
    request = {"v": VERSION, "token": f"Bearer {TOKEN}", "job": "job-a", **fields}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(node.local.path))
        send_frame(sock, request)
        return recv_frame(sock)


def test_a_valid_ticket_gets_its_slice_file_read_only(node):
    answer, fds = ask(node, ticket=node.ticket(1, 100, 600))
    try:
        assert answer["ok"] is True
        assert answer["files"] == [{"slice": 1, "nbytes": node.node.cache.get(1).nbytes}]
        assert answer["ranges"][0]["start"] == 100 and answer["ranges"][0]["stop"] == 600
        (fd,) = fds
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(OSError):
            os.write(fd, b"x")
    finally:
        close_all(fds)
    assert node.node.stats()["rows_served_local"] == 500


def test_a_bundle_gets_one_descriptor_per_slice(node):
    tickets = [node.ticket(0, 0, 10), node.ticket(2, 5, 9), node.ticket(0, 10, 20)]
    answer, fds = ask(node, ticket=",".join(tickets))
    close_all(fds)
    assert [f["slice"] for f in answer["files"]] == [0, 2]
    assert [r["file"] for r in answer["ranges"]] == [0, 1, 0]
    assert len(fds) == 2


@pytest.mark.parametrize("token", [None, "Bearer wrong", TOKEN])
def test_a_bad_token_is_refused_and_the_node_stays_up(node, token):
    answer, fds = ask(node, ticket=node.ticket(0, 0, 10), token=token)
    assert fds == []
    assert answer["ok"] is False and answer["code"] == "unauthenticated"
    assert "bearer token" in answer["error"]
    good, fds = ask(node, ticket=node.ticket(0, 0, 10))
    close_all(fds)
    assert good["ok"] is True


def test_bad_tickets_are_refused_as_do_get_refuses_them(node):
    payload = node.ticket(0, 0, SLICE_ROWS[0]).split(".")[0]
    forged = payload + "." + node.ticket(0, 0, 10).split(".")[1]  # another ticket's signature
    cases = {
        "unauthenticated": forged,
        "restarted": TicketSigner(new_key())
        .sign(node.signer.verify(node.ticket(0, 0, 1).encode()))
        .decode(),
        "unauthorized": node.ticket(0, 0, 10, job="job-b"),  # another job's ticket
        "failed": node.ticket(0, 0, SLICE_ROWS[0] + 1),  # a range outside the slice
    }
    for code, ticket in cases.items():
        answer, fds = ask(node, ticket=ticket)
        assert fds == [] and answer["ok"] is False and answer["code"] == code, answer
    other_snapshot = node.ticket(0, 0, 10, snapshot_id=SNAPSHOT + 1)
    answer, _ = ask(node, ticket=other_snapshot)
    assert answer["code"] == "unauthorized" and "snapshot" in answer["error"]
    assert node.node.stats()["errors"] == 5
    assert node.node.stats()["rows_served_local"] == 0


def test_a_request_of_another_version_or_without_a_ticket_is_refused(node):
    assert ask(node, ticket=node.ticket(0, 0, 1), v=VERSION + 1)[0]["code"] == "invalid_argument"
    assert ask(node)[0]["code"] == "invalid_argument"


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_garbled_request_leaves_the_node_serving(node):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(node.local.path))
        sock.sendall(b"\x00\x00\x00\x05nope!")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(node.local.path))
        sock.sendall(b"\xff\xff\xff\xff")  # a frame larger than any request
    answer, fds = ask(node, ticket=node.ticket(0, 0, 10))
    close_all(fds)
    assert answer["ok"] is True


def test_the_socket_is_owner_and_group_only_and_removed_on_close(node):
    mode = os.stat(node.local.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    node.local.close()
    assert not node.local.path.exists()


def test_sockets_of_dead_nodes_are_swept_live_ones_kept(node):
    dead = node.local.path.with_name("icefeed-dead-1.sock")
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(dead))  # bound, never listening: what a killed node leaves behind
    leftover.close()
    other = node.local.path.with_name("icefeed-other-2.sock")
    with cached_node() as second:  # another live node's socket in another folder
        other.symlink_to(second.local.path)
        assert sweep_dead_sockets(node.local.path.parent) == [dead]
        assert node.local.path.exists() and other.exists()
    answer, fds = ask(node, ticket=node.ticket(0, 0, 10))
    close_all(fds)
    assert answer["ok"] is True


def test_a_socket_path_over_the_kernels_limit_serves_no_local_reads(node, caplog):
    too_long = node.local.path.parent / ("d" * 120)
    with caplog.at_level(logging.ERROR, "feeder.node.datanode"):
        assert _serve_local("n1", node.node, too_long, NodeSettings()) is None
    assert "longer than 107 bytes" in caplog.text
    served = _serve_local("n1", node.node, node.local.path.parent / "ok", NodeSettings())
    assert served is not None and served.path.exists()
    served.close()
