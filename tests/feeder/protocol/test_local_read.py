"""The local read wire: frames with descriptors attached, over a real Unix socket pair."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from feeder.protocol.local_read import (
    FDS_PER_MESSAGE,
    LocalRange,
    LocalReadError,
    close_all,
    recv_frame,
    send_frame,
    socket_name,
)
from feeder.protocol.shuffle_kind import Shuffle


@pytest.mark.parametrize("count", [0, 1, FDS_PER_MESSAGE, 2 * FDS_PER_MESSAGE + 50])
def test_every_descriptor_arrives_in_order_with_its_frame(tmp_path, count):
    paths = [tmp_path / f"f{i}" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(str(i).encode())
    fds = [os.open(path, os.O_RDONLY) for path in paths]
    message = {"files": [{"slice": i} for i in range(count)], "pad": "x" * 10}
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        sender = threading.Thread(target=send_frame, args=(left, message, fds))
        sender.start()
        got, received = recv_frame(right)
        sender.join(10)
    close_all(fds)
    try:
        assert got == message
        assert [os.pread(fd, 8, 0) for fd in received] == [str(i).encode() for i in range(count)]
    finally:
        close_all(received)


def test_a_peer_that_leaves_mid_frame_or_sends_garbage_is_an_error():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with right:
        left.sendall(b"\x00\x00\x00\x10{")
        left.close()
        with pytest.raises(LocalReadError, match="closed"):
            recv_frame(right)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        left.sendall(b"\x00\x00\x00\x02[]")
        with pytest.raises(LocalReadError, match="not a JSON object"):
            recv_frame(right)


def test_a_range_round_trips_without_job_or_snapshot():
    wire = {"file": 1, "slice": 3, "start": 5, "stop": 90, "epoch": 2, "seed": 7}
    wire |= {"shuffle": "mix", "block": 16, "cols": ["a", "b"]}
    parsed = LocalRange.from_dict(wire, job="j")
    assert parsed.claims.job == "j" and parsed.claims.shuffle is Shuffle.MIX
    assert parsed.claims.columns == ("a", "b") and parsed.to_dict() == wire


def test_socket_names_keep_only_safe_characters():
    assert socket_name("t0", 42) == "icefeed-t0-42.sock"
    assert socket_name("../evil node", 7) == "icefeed-.._evil_node-7.sock"
