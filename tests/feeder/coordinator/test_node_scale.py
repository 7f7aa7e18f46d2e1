"""Exactly once per epoch with 4 and 8 data nodes, each a process of its own.

The coordinator runs in the test process; the data nodes are real
``run_data_node`` servers in separate processes (``tests.feeder.node_process``,
stand-ins for Spark executors only). A 6,000-row table cut into 12 slices (one
per row group) spreads over every node. Static mode: 4 ranks; dynamic mode: 5
consumers take their first unit in turn (so each leases while the others hold
leases), then read to the epoch's end at once (MIX windows of 500 rows: 12
lease units per epoch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.config import FeederConfig
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.protocol.mix import MixParams
from feeder.protocol.tickets import TicketSigner, new_key
from tests.feeder.local_feeder import ids_of
from tests.feeder.node_process import node_processes
from tests.feeder.tables import make_table

ROWS = 6_000
SLICES = 12
WINDOWS = MixParams(block_rows=50, window_rows=500)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[4, 8], ids=lambda n: f"{n}nodes")
def feeder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Coordinator]:
    """A ready coordinator whose ``request.param`` node processes each cache some slices."""
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    home: Path = tmp_path_factory.mktemp(f"scale{request.param}")
    (home / "warehouse").mkdir()
    catalog = SqlCatalog("scale", **embedded_catalog_properties(home))
    catalog.create_namespace("test")
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=ROWS // SLICES)
    served = resolve(FeederConfig(table="test.feed", slice_bytes=10_000), catalog)
    assert len(served.plans) == SLICES
    key = new_key()
    # heartbeat_seconds=6: a node is declared dead after 30 s of silence, not 10 s;
    # eight node processes starting at once on a loaded 2-core machine can be that slow
    coordinator = Coordinator(
        served, signer=TicketSigner(key), slots=request.param, heartbeat_seconds=6.0
    )
    with node_processes(request.param, coordinator.endpoint, key, home / "cache") as procs:
        try:
            assert coordinator.wait_ready(120), coordinator.status()
            yield coordinator
        finally:
            coordinator.request_stop()
            codes = [proc.wait(30) for proc in procs]
            coordinator.close()
        assert codes == [0] * request.param


def _once(ids: list[int]) -> None:
    counts = Counter(ids)
    assert sorted(counts) == list(range(ROWS))
    assert set(counts.values()) == {1}


def test_every_node_caches_a_share_of_the_slices(feeder: Coordinator):
    nodes = feeder.status()["nodes"]
    assert len(nodes) == feeder.registry.slots
    assert all(node["alive"] for node in nodes)
    owners = {feeder.registry.locations(s)[0] for s in range(SLICES)}
    assert len(owners) == len(nodes)  # every node serves at least one slice first


@pytest.mark.parametrize("epoch", [0, 1])
def test_static_ranks_read_every_row_once_per_epoch(feeder: Coordinator, epoch: int):
    world = 4
    parts = []
    for rank in range(world):
        client = FeederClient(feeder.endpoint, job="static")
        parts.append(ids_of(client.stream(epoch, seed=7, rank=rank, world_size=world)))
    assert [len(p) for p in parts] == [ROWS // world] * world
    _once([i for p in parts for i in p])


@pytest.mark.parametrize("epoch", [0, 1])
def test_dynamic_consumers_read_every_row_once_per_epoch(feeder: Coordinator, epoch: int):
    consumers = 5
    streams = [
        FeederClient(feeder.endpoint, job="dynamic").stream(
            epoch, mode="dynamic", seed=7, mix=WINDOWS
        )
        for _ in range(consumers)
    ]
    # each consumer's first batch in turn: each holds a lease while the next one leases
    got = [ids_of([next(stream)]) for stream in streams]

    def drain(c: int) -> None:
        got[c].extend(ids_of(streams[c]))

    with ThreadPoolExecutor(consumers) as pool:  # then all at once, to the epoch's end
        list(pool.map(drain, range(consumers)))
    _once([i for ids in got for i in ids])
