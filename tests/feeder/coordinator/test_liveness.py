"""Liveness over real Flight: a lease whose rows stop moving expires although heartbeats come.

The coordinator runs on a manual clock (its injectable ``clock``), so "k x
lease_seconds without progress" is a clock step, not a sleep; everything else
is real: the coordinator, a data node and the rows it serves.
"""

from __future__ import annotations

import pyarrow.flight as flight
import pytest

from feeder.coordinator.limits import CoordinatorLimits
from feeder.protocol.auth import call_options
from feeder.protocol.messages import LeaseRequest
from tests.feeder.local_feeder import act, local_feeder, small_table_catalog

JOB = "stall"
LEASE_SECONDS = 0.75  # and steps of a third of it: exact in binary floating point


class ManualClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def catalog(tmp_path):
    return small_table_catalog(tmp_path, "live")


def _act(client: flight.FlightClient, name: str, body: dict | bytes) -> dict:
    return act(client, name, body, JOB)


def _rows(lease: dict) -> list[int]:
    node = flight.connect(lease["locations"][0])
    table = node.do_get(flight.Ticket(lease["ticket"]), call_options(None, JOB)).read_all()
    node.close()
    return table.column("id").to_pylist()


def test_a_stalled_lease_expires_despite_heartbeats_and_its_rest_is_leased_once(catalog, tmp_path):
    clock = ManualClock()
    limits = CoordinatorLimits(stall_leases=3)
    with local_feeder(
        catalog,
        cache_dir=tmp_path / "cache",
        nodes=1,
        slice_bytes=1 << 30,
        lease_seconds=LEASE_SECONDS,
        limits=limits,
        clock=clock,
    ) as feed:
        client = flight.connect(feed.endpoint)
        first = _act(
            client, "lease", LeaseRequest(job=JOB, consumer="a", shuffle="slice").to_body()
        )
        everything = _rows(first)
        delivered = everything[:30]  # consumer a delivers 30 rows, reports them, then stalls
        beat = {"job": JOB, "epoch": 0, "consumer": "a", "progress": {first["lease"]: 30}}
        assert _act(client, "heartbeat", beat) == {"lost": []}
        for _ in range(8):  # heartbeats keep coming, every third of the lease time, no rows move
            clock.advance(LEASE_SECONDS / 3)
            assert _act(client, "heartbeat", beat) == {"lost": []}
            assert (
                _act(
                    client, "lease", LeaseRequest(job=JOB, consumer="b", shuffle="slice").to_body()
                )["unit"]
                is None
            )
        clock.advance(LEASE_SECONDS / 3)  # now k x lease_seconds without progress
        second = _act(
            client, "lease", LeaseRequest(job=JOB, consumer="b", shuffle="slice").to_body()
        )
        assert second["unit"] == {"slice_id": 0, "start": 30, "stop": len(everything)}
        rest = _rows(second)
        assert sorted(delivered + rest) == sorted(everything)  # every row once
        assert len(set(delivered + rest)) == len(everything)
        # the stalled consumer wakes: a clear answer, and its done is refused
        woke = _act(client, "heartbeat", beat)
        assert woke["lost"] == [first["lease"]]
        assert "stalled" in woke["why"][first["lease"]]
        late = _act(
            client, "done", {"job": JOB, "epoch": 0, "consumer": "a", "lease": first["lease"]}
        )
        assert late["acknowledged"] is False and "stalled" in late["why"]
        done = {"job": JOB, "epoch": 0, "consumer": "b", "lease": second["lease"]}
        assert _act(client, "done", done) == {"acknowledged": True}
        assert _act(
            client, "lease", LeaseRequest(job=JOB, consumer="b", shuffle="slice").to_body()
        )["epoch_done"]
        client.close()


def test_a_lease_whose_rows_move_is_kept_past_k_lease_times(catalog, tmp_path):
    clock = ManualClock()
    with local_feeder(
        catalog,
        cache_dir=tmp_path / "cache",
        nodes=1,
        slice_bytes=1 << 30,
        lease_seconds=LEASE_SECONDS,
        limits=CoordinatorLimits(stall_leases=3),
        clock=clock,
    ) as feed:
        client = flight.connect(feed.endpoint)
        lease = _act(
            client, "lease", LeaseRequest(job=JOB, consumer="a", shuffle="slice").to_body()
        )
        for rows in range(1, 20):  # 19 heartbeats over 6+ lease times, one more row each
            clock.advance(LEASE_SECONDS / 3)
            beat = {"job": JOB, "epoch": 0, "consumer": "a", "progress": {lease["lease"]: rows}}
            assert _act(client, "heartbeat", beat) == {"lost": []}
        done = {"job": JOB, "epoch": 0, "consumer": "a", "lease": lease["lease"]}
        assert _act(client, "done", done) == {"acknowledged": True}
        client.close()


def test_a_static_job_that_keeps_reading_from_nodes_is_not_forgotten_as_idle(catalog, tmp_path):
    """A static epoch calls the coordinator only at its start; its reads reach the data
    nodes, which name the job in their next heartbeat, so the job (and the snapshot its
    epoch reads) stays live past ``idle_seconds`` while it reads, and is forgotten once
    neither it calls nor a node saw it read for that long."""
    from feeder.client.client import FeederClient

    clock = ManualClock()
    with local_feeder(
        catalog,
        cache_dir=tmp_path / "cache",
        nodes=1,
        limits=CoordinatorLimits(idle_seconds=5.0),
        clock=clock,
    ) as feed:
        coordinator = feed.coordinator

        def beats(status: dict) -> int:
            return sum(n["heartbeats"] for n in status["nodes"])

        def after_a_heartbeat_then_sweep(seconds: float) -> bool:
            """Move the clock, let the node send a heartbeat, sweep idle jobs; is the job
            still live?"""
            clock.advance(seconds)
            seen = beats(coordinator.status())
            assert coordinator.wait_for(lambda s: beats(s) > seen + 1, 30)
            with coordinator._ready:
                coordinator._consumers.books.sweep()
            return "long" in coordinator.status()["jobs"]

        # the plan is the job's last call to the coordinator this epoch; then it reads
        endpoint = FeederClient(feed.endpoint, job="long").plan(0, shuffle=False).endpoints[0]
        node = flight.connect(endpoint.locations[0].uri.decode())

        def read() -> int:
            return node.do_get(endpoint.ticket, call_options(None, "long")).read_all().num_rows

        assert read() > 0
        for _ in range(3):  # 12 s of clock, a read in between: never 5 s without one
            assert after_a_heartbeat_then_sweep(4.0)
            assert read() > 0
        assert after_a_heartbeat_then_sweep(0.0)  # the node reports the last read now
        assert after_a_heartbeat_then_sweep(4.0)  # 4 s without a read
        assert not after_a_heartbeat_then_sweep(4.0)  # 8 s without a read or a call
        node.close()
