"""Capacity-aware placement with real parts: a real Coordinator and real data nodes in
threads (tests/feeder/local_feeder.py), nodes made small by ``cache_capacity_bytes``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.registry import cache_budget
from jobs.errors import FeederError
from tests.feeder.local_feeder import ids_of, local_feeder, small_table_catalog

ROWS = 6_000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    home = tmp_path_factory.mktemp("capacity-home")
    return small_table_catalog(
        home, "capacity", files=2, rows_per_file=ROWS // 2, row_group_rows=500
    )


def budgets(coordinator) -> list[int]:
    return [cache_budget(p.estimated_bytes, row_copy=True) for p in coordinator.served.plans]


def disk_bytes(folder: str) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def test_a_node_with_room_for_part_of_its_share_caches_within_its_limit(catalog, tmp_path):
    # 12 slices of ~37 KB of cache each: a slot's share is ~220 KB; t1 has room for ~3
    limit = 120_000
    with local_feeder(
        catalog, cache_dir=tmp_path / "c", nodes=2, node_capacity=[None, limit]
    ) as feed:
        reg = feed.coordinator.registry
        small, roomy = reg.nodes["t1"], reg.nodes["t0"]
        share = sum(b for s, b in enumerate(budgets(feed.coordinator)) if s % 2 == small.slot)
        assert share > limit and small.capacity == limit
        mine = [s for s, holders in enumerate(reg.cached_by) if "t1" in holders]
        theirs = [s for s, holders in enumerate(reg.cached_by) if "t0" in holders]
        assert 0 < len(mine) < reg.num_slices // 2 < len(theirs)
        assert sorted(mine + theirs) == list(range(reg.num_slices))  # each slice cached once
        assert disk_bytes(small.cache_dir) <= limit
        assert disk_bytes(roomy.cache_dir) > share
        assert reg.locations(mine[0])[0] == small.location
        client = FeederClient(feed.endpoint, job="capacity")
        assert sorted(ids_of(client.stream(0, seed=1, shuffle="slice"))) == list(range(ROWS))
        dynamic = ids_of(client.stream(1, mode="dynamic", seed=1))
        assert sorted(dynamic) == list(range(ROWS))


def test_a_table_larger_than_every_node_together_is_a_clear_error(catalog, tmp_path):
    from feeder.coordinator.config import FeederConfig
    from feeder.coordinator.session import resolve

    served = resolve(FeederConfig(table="test.feed", slice_bytes=20_000), catalog)
    total = sum(cache_budget(p.estimated_bytes, row_copy=True) for p in served.plans)
    each = 100_000
    assert 2 * each < total
    small = local_feeder(catalog, cache_dir=tmp_path / "c", nodes=2, node_capacity=[each, each])
    with pytest.raises(FeederError, match="cannot fit") as err, small:
        pass
    message = str(err.value)
    assert f"need about {total:,} bytes of cache" in message
    assert f"t0 (slot 0, {tmp_path}" in message or f"t0 (slot 1, {tmp_path}" in message
    assert message.count(f"): {each:,}") == 2
    assert f"can cache {2 * each:,} bytes in all" in message
    assert "more nodes" in message and "feeder.cache.sizeLimit" in message
    assert "row_filter" in message
    alive = [t.name for t in threading.enumerate() if t.name.startswith("fake-spark-task")]
    assert alive == []
