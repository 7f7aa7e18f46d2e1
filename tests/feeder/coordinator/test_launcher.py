"""Node loss: SIGKILL a data node's Spark Python worker mid-epoch; the epoch ends exactly once.

One feeder (2 nodes, the session Spark's both slots) for the module. Nodes send
small batches (``batch_rows``) so the kill lands inside a slice range and the
client has to resume at the row offset it already delivered.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from collections import Counter

import pytest

import feeder
from feeder.client.client import FeederClient
from feeder.coordinator.launcher import NodeTaskSpec, node_partition
from feeder.node.settings import NodeSettings
from tests.feeder.tables import make_table

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROWS = 24_000


@pytest.fixture(scope="module")
def running(spark, tmp_path_factory):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    home = tmp_path_factory.mktemp("launcher-home")
    (home / "warehouse").mkdir()
    cat = SqlCatalog("launcher", **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=3, rows_per_file=ROWS // 3, row_group_rows=1000)
    with feeder.serve(
        "test.feed",
        spark=spark,
        catalog=cat,
        nodes=2,
        slice_bytes=120_000,
        cache_dir=home / "cache",
        heartbeat_seconds=0.5,
        batch_rows=250,
    ) as f:
        f.wait_ready(120)
        yield f


def _range_of(ticket: bytes) -> tuple[int, int]:
    payload = ticket.split(b".")[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    return claims["start"], claims["stop"]


def _node_serving(f, client: FeederClient, delivered: int, **plan_args) -> dict:
    """The live node listed first for the range that holds row ``delivered`` of the stream."""
    info = client.plan(**plan_args)
    offset = 0
    for endpoint in info.endpoints:
        start, stop = _range_of(endpoint.ticket.ticket)
        offset += stop - start
        if offset > delivered:
            location = endpoint.locations[0].uri.decode()
            return next(n for n in f.status()["nodes"] if n["location"] == location)
    raise AssertionError("row beyond the plan")


def _wait_replaced(f, victim: dict) -> None:
    """Wait until ``victim`` is declared dead and two nodes are alive again."""

    def healed(status: dict) -> bool:
        dead = [n for n in status["nodes"] if n["node_id"] == victim["node_id"] and not n["alive"]]
        return bool(dead) and status["nodes_alive"] == 2

    assert f.coordinator.wait_for(healed, 60), f.status()


def test_each_row_once_per_epoch_after_node_loss_static(running):
    f = running
    client = FeederClient(f.endpoint, job="static-loss", retry_seconds=60)
    ids: list[int] = []
    victim = None
    # slice order: a node's range arrives in batches (a MIX window arrives whole)
    for batch in client.stream(0, seed=5, shuffle="slice"):
        ids.extend(batch.column("id").to_pylist())
        if victim is None and len(ids) >= ROWS // 3:
            victim = _node_serving(f, client, len(ids), epoch=0, seed=5, shuffle="slice")
            os.kill(victim["pid"], signal.SIGKILL)
    assert victim is not None
    every = Counter(ids)
    assert set(every.values()) == {1} and set(every) == set(range(ROWS))
    _wait_replaced(f, victim)
    nodes = {n["node_id"]: n for n in f.status()["nodes"]}
    assert any(node_id.startswith(victim["node_id"] + "r") for node_id in nodes)  # replacement
    assert any(node_id == victim["node_id"] for node_id, _ in f.launcher.failures)


def test_each_row_once_per_epoch_after_node_loss_dynamic(running):
    f = running
    assert f.coordinator.wait_for(lambda s: s["nodes_alive"] == 2, 60)
    client = FeederClient(f.endpoint, job="dynamic-loss", retry_seconds=60)
    ids: list[int] = []
    victim = None
    for batch in client.stream(0, mode="dynamic", seed=6):
        ids.extend(batch.column("id").to_pylist())
        if victim is None and len(ids) >= ROWS // 3:
            victim = next(n for n in f.status()["nodes"] if n["alive"])
            os.kill(victim["pid"], signal.SIGKILL)
    assert victim is not None
    every = Counter(ids)
    assert set(every.values()) == {1} and set(every) == set(range(ROWS))
    _wait_replaced(f, victim)
    assert any(node_id == victim["node_id"] for node_id, _ in f.launcher.failures)
    # the replacement serves: a full epoch from the healed feeder
    again = FeederClient(f.endpoint, job="after-loss").stream(1, shuffle=False)
    assert sorted(i for b in again for i in b.column("id").to_pylist()) == list(range(ROWS))


def test_node_task_spec_never_shows_its_key_or_token():
    from pydantic import SecretStr

    spec = NodeTaskSpec(
        coordinator_endpoint="grpc://127.0.0.1:1",
        ticket_key=b"k" * 32,
        settings=NodeSettings(token=SecretStr("tok")),
    )
    assert "kkkk" not in repr(spec) and "tok'" not in repr(spec)
    assert callable(node_partition("n0", spec))
