"""Which host a process says it runs on, and which host names the protocol accepts."""

from __future__ import annotations

import socket

import pytest

from feeder.protocol.hosts import HOST_ENV, check_host, local_host
from feeder.protocol.messages import LeaseRequest
from feeder.protocol.node_messages import RegisterRequest
from jobs.errors import SpecError


def test_an_override_wins_over_the_environment_and_the_hostname():
    assert local_host("node-7", {HOST_ENV: "node-1"}) == "node-7"
    assert local_host(None, {HOST_ENV: "ip-10-0-0-1.ec2.internal"}) == "ip-10-0-0-1.ec2.internal"
    assert local_host(None, {}) == socket.gethostname()


@pytest.mark.parametrize("bad", ["", "-lead", "has space", "a/b", "x" * 254, 7, None])
def test_a_bad_host_name_is_refused_naming_the_field(bad):
    with pytest.raises(SpecError, match="host"):
        check_host(bad)
    if isinstance(bad, str) and bad:
        with pytest.raises(SpecError, match=HOST_ENV):
            local_host(None, {HOST_ENV: bad})


def test_lease_and_register_carry_the_host_only_when_set():
    lease = LeaseRequest(consumer="c", host="h1")
    assert LeaseRequest.from_body(lease.to_body()).host == "h1"
    assert b"host" not in LeaseRequest(consumer="c").to_body()
    assert LeaseRequest.from_body(LeaseRequest(consumer="c").to_body()).host is None
    register = RegisterRequest(node_id="n", location="grpc://a:1", host="h2")
    assert RegisterRequest.from_json(register.to_json()).host == "h2"
    with pytest.raises(SpecError, match="host"):
        LeaseRequest.from_body(b'{"consumer": "c", "host": "a b"}')
    with pytest.raises(SpecError, match="host"):
        RegisterRequest.from_dict({"node_id": "n", "location": "grpc://a:1", "host": "-x"})
