"""Failover of one reader's node reads (real Flight servers on 127.0.0.1)."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from feeder.client.client import FeederClient
from feeder.client.failover import NodeReader
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table

ROWS = 6_000


@pytest.fixture
def feed(catalog, tmp_path):
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    with local_feeder(catalog, cache_dir=tmp_path / "cache", nodes=2) as f:
        yield f


def test_a_node_connection_a_sibling_read_closed_is_opened_again_not_fatal(feed):
    # MIX reads a window's pieces on parallel threads of one NodeReader; a piece whose
    # node failed used to close the shared connection while a sibling was about to use
    # it — seen when a driver restart killed the node: "FlightClient is closed" then
    # ended the epoch. Here every connection is closed behind the reader's back.
    client = FeederClient(feed.endpoint, job="closed-under-us", timeout=20)
    for node in client.status()["nodes"]:
        client._nodes._node_client(node["location"]).close()  # as _drop_node in a sibling
    assert sorted(ids_of(client.stream(0, shuffle=False))) == list(range(ROWS))


class FlakyNode(flight.FlightServerBase):
    """A real Flight server that answers its first ``failures`` do_gets "unavailable"."""

    def __init__(self, failures: int) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.failures = failures
        self.calls = 0

    def do_get(self, context, ticket):
        self.calls += 1
        if self.calls <= self.failures:
            raise flight.FlightUnavailableError("data node is not registered yet; retry")
        return flight.RecordBatchStream(pa.table({"id": list(range(10))}))


def test_a_resume_the_coordinator_keeps_waiting_does_not_use_up_retry_seconds():
    # after a driver restart the first resume waits for the coordinator to come back
    # (restart_seconds), and the restarted node may refuse a few reads at first: the
    # range must still get its full retry_seconds of failover after that wait
    node = FlakyNode(failures=3)
    location = f"grpc://127.0.0.1:{node.port}"
    resumes: list[float] = []

    def resume(ticket: str, delivered: int) -> tuple[str, list[str]]:
        resumes.append(time.monotonic())
        if len(resumes) == 1:
            time.sleep(3.0)  # the coordinator, restarting, answers late
        return ticket, [location]

    reader = NodeReader(
        options=lambda timeout, chunks, windows: flight.FlightCallOptions(),
        resume=resume,
        tls=None,
        retry_seconds=2.0,
        stall_seconds=10,
    )
    try:
        batches = list(reader.read("t", [location]))
    finally:
        reader.close()
        node.shutdown()
    assert sum(b.num_rows for b in batches) == 10 and node.calls == 4
    assert len(resumes) == 3  # the late one counted, yet the failover went on
