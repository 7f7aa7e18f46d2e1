"""Failover of one reader's node connections (real coordinator, thread data nodes, Flight)."""

from __future__ import annotations

import pytest

from feeder.client.client import FeederClient
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
