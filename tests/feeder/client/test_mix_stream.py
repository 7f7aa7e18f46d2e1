"""The MIX shuffle end to end: real coordinator, real data nodes (threads), real Flight.

Small knobs (32-row blocks, 2048-row windows) so the 12,000-row table spans several
windows and a consumer's share cuts windows in the middle.
"""

from __future__ import annotations

import threading
from collections import Counter

import pyarrow as pa
import pytest

from feeder.client.client import FeederClient
from feeder.protocol.mix import MixParams
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table

ROWS = 12_000
MIX = MixParams(block_rows=32, window_rows=2048)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("mix-home")


@pytest.fixture(scope="module")
def module_catalog(home):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (home / "warehouse").mkdir()
    cat = SqlCatalog("mix", **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=3, rows_per_file=ROWS // 3, row_group_rows=500)
    return cat


@pytest.fixture(scope="module")
def feed(module_catalog, home):
    with local_feeder(module_catalog, cache_dir=home / "cache2", nodes=2, batch_rows=100) as f:
        yield f


def test_static_ranks_and_workers_get_every_row_once_and_equal_rows(feed):
    client = FeederClient(feed.endpoint, job="mix-static")
    per_rank = []
    seen: Counter[int] = Counter()
    for rank in range(2):
        rows = 0
        for worker in range(2):
            ids = ids_of(
                client.stream(
                    0,
                    rank=rank,
                    world_size=2,
                    seed=4,
                    mix=MIX,
                    worker=worker,
                    num_workers=2,
                    unit=100,
                )
            )
            rows += len(ids)
            seen.update(ids)
        per_rank.append(rows)
    assert per_rank == [ROWS // 2, ROWS // 2]
    assert sorted(seen) == list(range(ROWS)) and set(seen.values()) == {1}


def test_order_is_mixed_repeats_for_a_seed_and_differs_across_epochs(feed):
    client = FeederClient(feed.endpoint, job="mix-order")
    first = ids_of(client.stream(0, seed=9, mix=MIX))
    assert sorted(first) == list(range(ROWS))
    assert first == ids_of(client.stream(0, seed=9, mix=MIX))
    assert first != ids_of(client.stream(1, seed=9, mix=MIX))
    # the first 2048 rows (one window) come from every file's stretch of ids
    assert {i * 3 // ROWS for i in first[:2048]} == {0, 1, 2}


#: reads whose order must not depend on how many data nodes serve the table
_ORDERED_READS = {
    "mix": dict(seed=5, mix=MIX),
    "slice": dict(seed=5, shuffle="slice"),
    "off": dict(seed=5, shuffle=False),
    "mix-rank-1-of-2": dict(seed=5, mix=MIX, rank=1, world_size=2),
}


def _orders(endpoint: str) -> dict[str, list[int]]:
    client = FeederClient(endpoint, job="order-n")
    return {name: ids_of(client.stream(2, **kw)) for name, kw in _ORDERED_READS.items()}


def test_the_order_does_not_depend_on_the_number_of_nodes(feed, module_catalog, home):
    """The same reads from 1, 2 and 3 data nodes give the same ids in the same order."""
    two = _orders(feed.endpoint)
    assert sorted(two["mix"]) == list(range(ROWS)) and two["mix"] != two["off"]
    for nodes in (1, 3):
        with local_feeder(module_catalog, cache_dir=home / f"n{nodes}", nodes=nodes) as other:
            assert len(other.coordinator.status()["nodes"]) == nodes
            assert _orders(other.endpoint) == two, f"{nodes} nodes"


@pytest.mark.parametrize("skip", [1, 1000, 2047, 2048, 5001])
def test_resume_skips_exactly_the_rows_delivered(feed, skip):
    client = FeederClient(feed.endpoint, job="mix-resume")
    kw = dict(rank=1, world_size=2, seed=3, mix=MIX, drop_last=False)
    full = ids_of(client.stream(0, **kw))
    assert ids_of(client.stream(0, skip_rows=skip, **kw)) == full[skip:]


def test_dynamic_concurrent_consumers_get_every_row_once(feed):
    client = FeederClient(feed.endpoint, job="mix-dynamic")
    results: list[list[int]] = [[] for _ in range(3)]

    def consume(k: int) -> None:
        results[k] = ids_of(client.stream(0, mode="dynamic", seed=2, mix=MIX))

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    counts = Counter(i for r in results for i in r)
    assert sorted(counts) == list(range(ROWS)) and set(counts.values()) == {1}


def test_a_piece_resumed_at_an_offset_is_served_by_another_node_from_that_row(feed):
    """Failover of a MIX piece: ``resume`` re-signs the rest of its block-stream range, and
    the other node (which may not cache the slice) serves exactly those rows."""
    client = FeederClient(feed.endpoint, job="mix-failover")
    endpoint = client.plan(0, seed=6, mix=MIX).endpoints[0]
    ticket = endpoint.ticket.ticket.decode()
    locations = [loc.uri.decode() for loc in endpoint.locations]
    assert len(locations) == 2
    whole = pa.Table.from_batches(list(client._nodes._node_batches(locations[0], ticket)))
    answer = client._coordinator.action("resume", {"ticket": ticket, "delivered": 7})
    rest = pa.Table.from_batches(list(client._nodes._node_batches(locations[1], answer["ticket"])))
    assert whole.num_rows > 7
    assert rest.column("id").to_pylist() == whole.column("id").to_pylist()[7:]


def test_slice_order_is_still_available(feed):
    client = FeederClient(feed.endpoint, job="mix-slice")
    ids = ids_of(client.stream(0, seed=1, shuffle="slice"))
    assert sorted(ids) == list(range(ROWS))
    assert ids != ids_of(client.stream(0, seed=1, mix=MIX))


def test_one_node_orders_whole_windows_itself_in_the_same_order(feed, module_catalog, home):
    """With one data node every window's pieces lie on it: it orders the windows itself
    (counted in ``rows_served_ordered``), static and dynamic, and the static order equals
    that of two nodes (whose windows span both, ordered by the consumer)."""
    kw = dict(rank=1, world_size=2, seed=8, mix=MIX, drop_last=False, unit=100)
    two = ids_of(FeederClient(feed.endpoint, job="mix-two").stream(0, **kw))
    with local_feeder(module_catalog, cache_dir=home / "one", nodes=1, batch_rows=300) as one:
        client = FeederClient(one.endpoint, job="mix-one")
        assert ids_of(client.stream(0, **kw)) == two
        dynamic = Counter(ids_of(client.stream(0, mode="dynamic", seed=8, mix=MIX)))
        assert sorted(dynamic) == list(range(ROWS)) and set(dynamic.values()) == {1}

        def ordered(status: dict) -> int:
            return sum(n["rows_served_ordered"] for n in status["nodes"])

        want = len(two) + ROWS
        assert one.coordinator.wait_for(lambda s: ordered(s) == want, 30), (
            ordered(one.coordinator.status()),
            want,
        )


def test_a_window_read_that_fails_mid_window_hands_on_each_row_once(
    feed, module_catalog, home, monkeypatch, caplog
):
    """A node's window rows are handed on as they arrive; when its stream fails in the
    middle of a window, the rest of that window is ordered by the consumer from its pieces,
    starting after the rows already handed on. The failure is injected (a RETRIABLE error
    raised by a wrapper around the real node's window stream after 3 of its batches, at a
    point a killed process cannot be timed to); everything else is real."""
    import logging

    import pyarrow.flight as flight

    from feeder.client.failover import NodeReader

    caplog.set_level(logging.INFO, logger="feeder.client.windows")
    kw = dict(rank=0, world_size=1, seed=5, mix=MIX, drop_last=False, unit=100)
    with local_feeder(module_catalog, cache_dir=home / "one-fail", nodes=1, batch_rows=300) as one:
        expected = ids_of(FeederClient(one.endpoint, job="mix-undisturbed").stream(0, **kw))
        real = NodeReader.read_windows
        calls: list[int] = []

        def fails_mid_window(self, location, tickets, windows, chunks):  # the injector
            calls.append(len(windows))
            for i, batch in enumerate(real(self, location, tickets, windows, chunks)):
                if i == 3 and len(calls) == 1:
                    raise flight.FlightUnavailableError("injected: the node went away")
                yield batch

        monkeypatch.setattr(NodeReader, "read_windows", fails_mid_window)
        got = ids_of(FeederClient(one.endpoint, job="mix-fails").stream(0, **kw))
    assert got == expected and sorted(got) == list(range(ROWS))
    stopped = [r.getMessage() for r in caplog.records if "reading the rest" in r.getMessage()]
    assert len(stopped) == 1 and "after 0 of" in stopped[0], stopped
    assert "and 900 rows of the next" in stopped[0], stopped  # 3 batches of 300: mid-window
