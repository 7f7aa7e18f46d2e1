"""fork_guard: a forked child sees its parent's live Flight clients and servers, and only those."""

from __future__ import annotations

import json
import os

from feeder.protocol import fork_guard
from feeder.protocol.auth import connect
from feeder.protocol.fork_guard import TrackedFlightServer


def _in_child() -> dict:
    """Fork; return what the child saw (its inherited users and its own live ones)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        os.close(read)
        report = {"inherited": list(fork_guard.inherited()), "live": fork_guard.live()}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return report


def test_a_child_inherits_the_open_clients_and_running_servers_of_its_parent():
    client = connect("grpc://127.0.0.1:1")
    server = TrackedFlightServer("grpc://127.0.0.1:0")
    try:
        assert "Flight client of grpc://127.0.0.1:1" in fork_guard.live()
        seen = _in_child()
        assert "Flight client of grpc://127.0.0.1:1" in seen["inherited"]
        assert f"TrackedFlightServer Flight server on port {server.port}" in seen["inherited"]
        assert seen["live"] == []  # the parent's users are not the child's own
    finally:
        server.shutdown()
    del client
    assert not [u for u in fork_guard.live() if "127.0.0.1:1" in u or str(server.port) in u]
    # closed is not enough: gRPC's process-wide threads outlive every client and server,
    # and a child forked after any gRPC use hangs (the module docstring has the figures)
    seen = _in_child()
    assert "Flight client of grpc://127.0.0.1:1 (closed)" in seen["inherited"]
    assert f"TrackedFlightServer Flight server on port {server.port} (closed)" in seen["inherited"]
    assert "Flight client of grpc://127.0.0.1:1" in fork_guard.used()
