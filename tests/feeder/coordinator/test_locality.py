"""Locality with real node processes on three simulated hosts (``h0``, ``h1``, ``h2``).

The coordinator runs in the test process with ``locality=True``; three
``run_data_node`` processes (``tests.feeder.node_process``) each report a host
override. A 6,000-row table in 12 slices spreads 4 slices over each node. A
consumer names its host with its leases (raw ``lease`` calls, to see which unit
it gets, or a ``FeederClient(host=...)``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.journal import Journal, session_identity
from feeder.coordinator.mixplan import grouped_layout
from feeder.coordinator.service import Coordinator
from feeder.protocol.messages import LeaseRequest
from feeder.protocol.mix import MixParams
from feeder.protocol.shuffle import SliceRange
from feeder.protocol.tickets import TicketSigner, new_key
from tests.feeder.local_feeder import act, ids_of
from tests.feeder.mix_rows import piece_rows
from tests.feeder.node_process import serving
from tests.feeder.tables import served_table

ROWS = 6_000
SLICES = 12
HOSTS = ["h0", "h1", "h2"]
WINDOWS = MixParams(block_rows=50, window_rows=500)  # 4 windows per host's 2,000 rows

pytestmark = pytest.mark.slow


def _coordinator(served: Any, key: bytes, **options: Any) -> Coordinator:
    """A coordinator with locality on for three node slots."""
    return Coordinator(
        served, signer=TicketSigner(key), slots=3, heartbeat_seconds=6.0, locality=True, **options
    )


@contextmanager
def three_hosts(home: Path) -> Iterator[tuple[Coordinator, list[subprocess.Popen[str]]]]:
    """A ready coordinator (locality on) and three node processes on hosts h0, h1, h2."""
    served = served_table(home, "locality", rows=ROWS, slices=SLICES, slice_bytes=10_000)
    key = new_key()
    coordinator = _coordinator(served, key)
    with serving(coordinator, 3, key, home / "cache", hosts=HOSTS) as procs:
        yield coordinator, procs


@pytest.fixture(scope="module")
def feeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    with three_hosts(tmp_path_factory.mktemp("locality")) as (coordinator, _procs):
        yield coordinator


def _host_of(coordinator: Coordinator, location: str) -> str | None:
    return coordinator.registry.host_of(location)


def _lease_all(
    coordinator: Coordinator, request: LeaseRequest
) -> list[tuple[dict[str, Any], list[str | None]]]:
    """Lease (and acknowledge) every unit of an epoch as one consumer; each answer with the
    host of the location each of its tickets is read from first."""
    client = flight.connect(coordinator.endpoint)
    out = []
    try:
        while True:
            answer = act(client, "lease", request.to_body(), request.job)
            if answer["unit"] is None:
                assert answer["epoch_done"]
                return out
            tickets = answer.get("pieces") or [answer]
            out.append((answer, [_host_of(coordinator, t["locations"][0]) for t in tickets]))
            body = {
                "job": request.job,
                "epoch": request.epoch,
                "consumer": request.consumer,
                "lease": answer["lease"],
            }
            assert act(client, "done", body, request.job)["acknowledged"]
    finally:
        client.close()


def test_nodes_report_their_hosts(feeder: Coordinator):
    nodes = feeder.status()["nodes"]
    assert sorted(node["host"] for node in nodes) == HOSTS


def test_a_consumer_leases_its_hosts_mix_windows_first_then_the_others(feeder: Coordinator):
    request = LeaseRequest(job="mix-first", consumer="c", host="h1", mix=WINDOWS)
    leases = _lease_all(feeder, request)
    hosts = [set(first) for _, first in leases]
    # every window mixes the slices of one host (locality builds windows per host group)
    assert all(len(h) == 1 for h in hosts)
    order = [h.pop() for h in hosts]
    local = order.count("h1")
    assert local >= 1
    assert order[:local] == ["h1"] * local  # every local window before any other
    assert sum(a["unit"]["stop"] - a["unit"]["start"] for a, _ in leases) == ROWS
    locality = feeder.status()["jobs"]["mix-first"]["locality"]
    assert locality["rows_leased"] == ROWS
    assert locality["rows_local"] == sum(
        a["unit"]["stop"] - a["unit"]["start"] for a, first in leases if set(first) == {"h1"}
    )


def test_slice_units_on_the_consumers_host_are_leased_first(feeder: Coordinator):
    request = LeaseRequest(job="slice-first", consumer="c", host="h2", shuffle="slice")
    order = [first[0] for _, first in _lease_all(feeder, request)]
    local = order.count("h2")
    assert local == SLICES // 3
    assert order[:local] == ["h2"] * local


def test_a_consumer_on_no_nodes_host_takes_work_in_queue_order(feeder: Coordinator):
    request = LeaseRequest(job="nowhere", consumer="c", host="elsewhere", mix=WINDOWS)
    leases = _lease_all(feeder, request)
    assert sum(a["unit"]["stop"] - a["unit"]["start"] for a, _ in leases) == ROWS
    assert feeder.status()["jobs"]["nowhere"]["locality"]["rows_local"] == 0


@pytest.mark.parametrize("shuffle", ["mix", "slice"])
def test_consumers_on_every_host_read_every_row_once(feeder: Coordinator, shuffle: str):
    job = f"once-{shuffle}"
    streams = [
        FeederClient(feeder.endpoint, job=job, host=host).stream(
            0, mode="dynamic", seed=5, shuffle=shuffle, mix=WINDOWS
        )
        for host in HOSTS
    ]
    counts = _read_all(streams)
    assert sorted(counts) == list(range(ROWS))
    assert set(counts.values()) == {1}
    locality = feeder.status()["jobs"][job]["locality"]
    assert locality["rows_leased"] == ROWS
    assert locality["rows_local"] > 0


def test_a_bad_host_is_refused_at_the_edge(feeder: Coordinator):
    body = json.loads(LeaseRequest(job="bad", consumer="c").to_body())
    body["host"] = "no spaces"
    client = flight.connect(feeder.endpoint)
    try:
        with pytest.raises(flight.FlightError, match="host"):
            act(client, "lease", json.dumps(body).encode(), "bad")
    finally:
        client.close()


def _read_all(streams: list[Iterator[Any]], between: Any = None) -> Counter:
    """Each stream's first batch in turn (each holds a lease), ``between()``, then every
    stream to its end at once; the ids read, counted."""
    got = [ids_of([next(stream)]) for stream in streams]
    if between is not None:
        between()

    def drain(c: int) -> None:
        got[c].extend(ids_of(streams[c]))

    with ThreadPoolExecutor(len(streams)) as pool:
        list(pool.map(drain, range(len(streams))))
    return Counter(i for ids in got for i in ids)


def test_a_node_lost_mid_epoch_with_locality_every_row_once(tmp_path: Path):
    with three_hosts(tmp_path) as (coordinator, procs):
        streams = [
            FeederClient(coordinator.endpoint, job="loss", host=host, stall_seconds=10.0).stream(
                0, mode="dynamic", seed=5, mix=WINDOWS
            )
            for host in HOSTS
        ]
        victim = procs[0]  # the node on h0: its windows are read from the other nodes

        def kill() -> None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)

        counts = _read_all(streams, kill)
        assert sorted(counts) == list(range(ROWS))
        assert set(counts.values()) == {1}


def _plan_hosts(coordinator: Coordinator, rank: int, locality: bool) -> set[str | None]:
    client = FeederClient(coordinator.endpoint, job=f"static-{locality}")
    info = client.plan(0, seed=5, rank=rank, world_size=3, mix=WINDOWS, locality=locality)
    return {_host_of(coordinator, e.locations[0].uri.decode()) for e in info.endpoints}


def test_static_locality_puts_each_ranks_part_on_one_slots_node(feeder: Coordinator):
    # 3 slots of 2,000 rows each, 3 ranks: rank r's part is slot r's slices exactly
    slot_host = {n["slot"]: n["host"] for n in feeder.status()["nodes"]}
    assert [_plan_hosts(feeder, rank, True) for rank in range(3)] == [
        {slot_host[rank]} for rank in range(3)
    ]
    assert all(len(_plan_hosts(feeder, rank, False)) == 3 for rank in range(3))
    parts = [
        ids_of(
            FeederClient(feeder.endpoint, job="static-once").stream(
                1, seed=5, rank=rank, world_size=3, mix=WINDOWS, locality=True
            )
        )
        for rank in range(3)
    ]
    assert [len(p) for p in parts] == [ROWS // 3] * 3
    assert sorted(i for p in parts for i in p) == list(range(ROWS))
    again = FeederClient(feeder.endpoint, job="static-again").stream(
        1, seed=5, rank=1, world_size=3, mix=WINDOWS, locality=True
    )
    assert ids_of(again) == parts[1]  # the same order for the same (seed, epoch, world, placement)


def _slice_ids(plans: Any) -> list[list[int]]:
    """The ``id`` of each row of each slice, in slice order (read from its data file)."""
    import pyarrow.parquet as pq

    out = []
    for plan in plans:
        path = plan.file_path.removeprefix("file://")
        table = pq.ParquetFile(path).read_row_groups(list(plan.row_groups), columns=["id"])
        out.append(table.column("id").to_pylist())
    return out


def test_a_restarted_coordinator_keeps_the_epochs_host_groups_and_every_row_once(
    tmp_path: Path,
):
    """Phase 1 acknowledges 3 per-host windows and the coordinator goes away; the one
    restarted from its journal (same key, nodes on other hosts) serves the rest: the
    journaled groups, not the new placement, say which rows are left."""
    served = served_table(tmp_path, "restart", rows=ROWS, slices=SLICES, slice_bytes=10_000)
    identity = session_identity(served, slice_bytes=10_000)
    journal = Journal(tmp_path / "journal")
    started = journal.begin(identity)
    first = _coordinator(served, started.key, journal=journal)
    request = LeaseRequest(job="restart", seed=5, consumer="c", host="h1", mix=WINDOWS)
    with serving(first, 3, started.key, tmp_path / "a", hosts=HOSTS):
        client = flight.connect(first.endpoint)
        units = []
        for _ in range(3):
            answer = act(client, "lease", request.to_body(), "restart")
            units.append(SliceRange(**answer["unit"]))
            body = {"job": "restart", "epoch": 0, "consumer": "c", "lease": answer["lease"]}
            assert act(client, "done", body, "restart")["acknowledged"]
        client.close()
        counts = first.registry.exact_row_counts()
    again = Journal(tmp_path / "journal").begin(identity)
    assert again.key == started.key and again.books is not None
    (book,) = again.books["books"]
    groups = tuple((h, tuple(ids)) for h, ids in book["groups"])
    layout = grouped_layout(tuple(counts), WINDOWS, groups)
    ids = _slice_ids(served.plans)
    start = [sum(counts[:s]) for s in range(SLICES)]
    gone = [
        ids[p.slice_id][r - start[p.slice_id]]
        for unit in units
        for p in layout.read(unit).pieces
        for r in piece_rows(counts, p, WINDOWS, seed=5, epoch=0).tolist()
    ]
    assert len(gone) == sum(u.num_rows for u in units) > 0
    second = _coordinator(served, again.key, restored=again.books)
    with serving(second, 3, again.key, tmp_path / "b", hosts=["h2", "h0", "h1"]):
        rest = ids_of(
            FeederClient(second.endpoint, job="restart", host="h0").stream(
                0, mode="dynamic", seed=5, mix=WINDOWS
            )
        )
    counted = Counter(gone + rest)
    assert sorted(counted) == list(range(ROWS))
    assert set(counted.values()) == {1}


def test_a_node_counts_the_rows_it_serves_to_consumers_on_its_own_host(tmp_path):
    """Consumers name their host on every ``do_get``; a node counts the rows it serves to
    its own host (``rows_served_same_host``, any mode: table order, slice ranges and
    node-ordered MIX windows), so the local share of static reads is reported too."""
    from tests.feeder.local_feeder import local_feeder, small_table_catalog

    catalog = small_table_catalog(tmp_path, "hosts", files=2, rows_per_file=600)
    with local_feeder(catalog, cache_dir=tmp_path / "cache", nodes=1, locality_host="h1") as f:
        here = FeederClient(f.endpoint, job="here", host="h1")
        there = FeederClient(f.endpoint, job="there", host="h2")
        rows = len(ids_of(here.stream(0, shuffle=False)))
        assert len(ids_of(there.stream(0, shuffle=False))) == rows == 1200
        assert len(ids_of(here.stream(0, seed=2))) == rows  # MIX: windows the node orders
        assert len(ids_of(there.stream(0, seed=2, shuffle="slice"))) == rows

        def counts(status: dict) -> tuple[int, int]:
            node = status["nodes"][0]
            return node["rows_served"], node["rows_served_same_host"]

        assert f.coordinator.wait_for(lambda s: counts(s) == (4 * rows, 2 * rows), 30), counts(
            f.coordinator.status()
        )
