"""A restarted feeder says so: tickets and leases of the old session get code ``restarted``.

Two real feeders one after the other on one table (the second is the first,
restarted): a ticket and a lease of the first, sent to the second's coordinator
and data node over real Flight, are refused with a message that says the feeder
was restarted, not "bad signature" or "lease first".
"""

from __future__ import annotations

import pyarrow.flight as flight
import pytest

from feeder.protocol.auth import call_options
from feeder.protocol.messages import LeaseRequest, StaticRequest
from feeder.protocol.wire_errors import ErrorCode, error_code
from tests.feeder.local_feeder import act, local_feeder, small_table_catalog

JOB = "restart"


@pytest.fixture
def catalog(tmp_path):
    return small_table_catalog(tmp_path, "restart")


def _act(client: flight.FlightClient, name: str, body: dict | bytes) -> dict:
    return act(client, name, body, JOB)


def _restarted(exc: BaseException) -> None:
    assert error_code(exc) is ErrorCode.RESTARTED, exc
    assert "the feeder was restarted" in str(exc)
    assert "bad signature" not in str(exc) and "lease first" not in str(exc)


def test_tickets_and_leases_of_a_restarted_feeder_get_a_clear_error(catalog, tmp_path):
    with local_feeder(catalog, cache_dir=tmp_path / "a", nodes=1, slice_bytes=1 << 30) as first:
        client = flight.connect(first.endpoint)
        command = StaticRequest(job=JOB).to_command()
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        ticket = info.endpoints[0].ticket
        lease = _act(client, "lease", LeaseRequest(job=JOB, consumer="c").to_body())
        old_session = _act(client, "status", b"")["session"]
        assert lease["session"] == old_session and lease["lease"].startswith(old_session)
        client.close()
    with local_feeder(catalog, cache_dir=tmp_path / "b", nodes=1, slice_bytes=1 << 30) as second:
        client = flight.connect(second.endpoint)
        assert _act(client, "status", b"")["session"] != old_session
        resume = {"ticket": ticket.ticket.decode(), "delivered": 0}
        with pytest.raises(flight.FlightUnauthenticatedError) as refused:
            _act(client, "resume", resume)
        _restarted(refused.value)
        beat = {"job": JOB, "epoch": 0, "consumer": "c", "progress": {lease["lease"]: 10}}
        with pytest.raises(flight.FlightUnauthenticatedError) as refused:
            _act(client, "heartbeat", beat)
        _restarted(refused.value)
        done = {"job": JOB, "epoch": 0, "consumer": "c", "lease": lease["lease"]}
        with pytest.raises(flight.FlightUnauthenticatedError) as refused:
            _act(client, "done", done)
        _restarted(refused.value)
        (node_location,) = (second.coordinator.status()["nodes"][0]["location"],)
        node = flight.connect(node_location)
        with pytest.raises(flight.FlightUnauthenticatedError) as refused:
            node.do_get(ticket, call_options(None, JOB)).read_all()
        _restarted(refused.value)
        # a ticket of this session with a forged signature is still just a bad signature
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        payload, _ = info.endpoints[0].ticket.ticket.split(b".")
        forged = flight.Ticket(payload + b"." + b"A" * 43)
        with pytest.raises(flight.FlightUnauthenticatedError, match="bad signature"):
            node.do_get(forged, call_options(None, JOB)).read_all()
        node.close()
        client.close()
