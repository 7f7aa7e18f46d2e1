"""Locality (group ``locality``): the share of rows consumers read from a node on their host.

Four data nodes, each a process of its own (``tests.feeder.node_process``) on a
simulated host (``h0`` .. ``h3``, a host override each), cache a 192,000-row table
in 16 slices (4 per node). One consumer per host (``FeederClient(host=...)``, a
thread each of this process) reads an epoch in dynamic mode to its end, all at
once; the coordinator (``locality=True``) counts the rows it leased to a consumer
on the host of the node the consumer reads first (``status()["jobs"][job]
["locality"]``). Cases: MIX with windows per host group (8,000-row windows, 6 per
host), slice order, and MIX without locality (windows span every host; the
reference). Records ``local_share`` (the issue's bar: >= 90 % in dynamic mode with
consumers on every node's host, judged by ``tests.bench.summary``), rows and seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.service import Coordinator
from feeder.protocol.mix import MixParams
from feeder.protocol.tickets import TicketSigner, new_key
from tests.bench.recorder import record
from tests.feeder.local_feeder import ids_of
from tests.feeder.node_process import serving
from tests.feeder.tables import served_table

pytestmark = pytest.mark.bench

GROUP = "locality"
ROWS = 192_000
SLICES = 16
HOSTS = ["h0", "h1", "h2", "h3"]
WINDOWS = MixParams(block_rows=64, window_rows=8_000)


def _feeder(home: Path, *, locality: bool) -> Iterator[tuple[Coordinator, bool]]:
    served = served_table(home, "bench_locality", rows=ROWS, slices=SLICES, slice_bytes=100_000)
    key = new_key()
    coordinator = Coordinator(
        served,
        signer=TicketSigner(key),
        slots=len(HOSTS),
        heartbeat_seconds=6.0,
        locality=locality,
    )
    nodes = len(HOSTS)
    with serving(
        coordinator, nodes, key, home / "cache", hosts=HOSTS, batch_rows=4096, ready_seconds=180
    ):
        yield coordinator, locality


@pytest.fixture(scope="module", params=[True, False], ids=["locality", "no_locality"])
def feeder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from _feeder(tmp_path_factory.mktemp("locality"), locality=request.param)


@pytest.mark.parametrize("shuffle", ["mix", "slice"])
def test_bench_locality_local_share(feeder: tuple[Coordinator, bool], shuffle: str):
    coordinator, locality = feeder
    if shuffle == "slice" and not locality:
        pytest.skip("slice order leases by host with or without the locality option")
    job = f"bench-{shuffle}"
    streams = [
        FeederClient(coordinator.endpoint, job=job, host=host).stream(
            0, mode="dynamic", seed=1, shuffle=shuffle, mix=WINDOWS
        )
        for host in HOSTS
    ]
    got: list[list[int]] = [[] for _ in HOSTS]

    def drain(c: int) -> None:
        got[c].extend(ids_of(streams[c]))

    start = time.perf_counter()
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(drain, range(len(HOSTS))))
    seconds = time.perf_counter() - start
    counts = Counter(i for ids in got for i in ids)
    assert len(counts) == ROWS and set(counts.values()) == {1}  # every row once
    figures = coordinator.status()["jobs"][job]["locality"]
    case = f"dynamic_{shuffle}_{len(HOSTS)}hosts" + ("" if locality else "_no_locality")
    record(
        GROUP,
        case,
        rows=ROWS,
        seconds=seconds,
        local_share=figures["local_share"],
        rows_local=figures["rows_local"],
        rows_leased=figures["rows_leased"],
        rows_per_consumer=[len(ids) for ids in got],
        target=">= 0.9" if locality else None,
    )
