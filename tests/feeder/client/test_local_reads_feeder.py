"""Short-circuit local reads end to end: a coordinator and two data node processes.

The coordinator runs in the test process; the data nodes are real ``run_data_node``
servers in processes of their own (``tests.feeder.node_process``) serving local reads
on sockets in one directory, as co-located executors do. Every row is read once per
epoch through their cache files, static and dynamic; with the directory out of the
consumers' sight (not shared), or local reads off, every row comes over Flight.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.config import FeederConfig
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.protocol.tickets import TicketSigner, new_key
from tests.feeder.local_feeder import ids_of
from tests.feeder.node_process import node_processes
from tests.feeder.tables import make_table

ROWS = 3_000
SLICES = 6
TOKEN = "local-feeder-token"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def feeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Coordinator, Path]]:
    """A ready coordinator whose two node processes serve local reads in a socket dir."""
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    home: Path = tmp_path_factory.mktemp("local-reads")
    (home / "warehouse").mkdir()
    catalog = SqlCatalog("localreads", **embedded_catalog_properties(home))
    catalog.create_namespace("test")
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=ROWS // SLICES)
    served = resolve(FeederConfig(table="test.feed", slice_bytes=10_000), catalog)
    key = new_key()
    coordinator = Coordinator(
        served, signer=TicketSigner(key), slots=2, heartbeat_seconds=1.0, token=TOKEN
    )
    sockets = Path(tempfile.mkdtemp(prefix="icefeed-lrf-", dir="/tmp"))  # socket paths are short
    with node_processes(
        2, coordinator.endpoint, key, home / "cache", local_dir=sockets, token=TOKEN
    ) as procs:
        try:
            assert coordinator.wait_ready(120), coordinator.status()
            yield coordinator, sockets
        finally:
            coordinator.request_stop()
            codes = [proc.wait(30) for proc in procs]
            coordinator.close()
            shutil.rmtree(sockets, ignore_errors=True)
        assert codes == [0, 0]


def _once(ids: list[int]) -> None:
    counts = Counter(ids)
    assert sorted(counts) == list(range(ROWS))
    assert set(counts.values()) == {1}


def _static(endpoint: str, shuffle: str, **client: object) -> tuple[list[int], dict[str, int]]:
    """Read epoch 1 as two ranks; every id read and the rows read each way."""
    ids: list[int] = []
    counts: Counter[str] = Counter()
    for rank in range(2):
        with FeederClient(endpoint, job=f"static-{shuffle}", token=TOKEN, **client) as c:
            ids += ids_of(c.stream(1, rank=rank, world_size=2, shuffle=shuffle, unit=64))
            counts.update(c.read_counts())
    return ids, dict(counts)


@pytest.mark.parametrize("shuffle", ["off", "slice", "mix"])
def test_static_ranks_read_every_row_once_from_the_cache_files(feeder, shuffle):
    coordinator, _ = feeder
    ids, counts = _static(coordinator.endpoint, shuffle)
    _once(ids)
    assert counts["rows_flight"] == 0
    # MIX ranks read whole windows and keep their part: windows at a share's edges twice
    assert counts["rows_local"] == ROWS if shuffle != "mix" else counts["rows_local"] >= ROWS


def test_dynamic_consumers_read_every_row_once_from_the_cache_files(feeder):
    coordinator, _ = feeder

    def consume(_: int) -> tuple[list[int], dict[str, int]]:
        with FeederClient(coordinator.endpoint, job="dynamic", token=TOKEN) as c:
            return ids_of(c.stream(0, mode="dynamic", unit=50)), c.read_counts()

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(consume, range(3)))
    _once([i for ids, _ in results for i in ids])
    assert sum(c["rows_local"] for _, c in results) == ROWS
    assert sum(c["rows_flight"] for _, c in results) == 0


def test_nodes_count_the_rows_they_handed_over_locally(feeder):
    coordinator, _ = feeder
    _static(coordinator.endpoint, "off")
    deadline = time.monotonic() + 30

    def local_rows() -> int:
        return sum(n["rows_served_local"] for n in coordinator.status()["nodes"])

    while local_rows() < ROWS and time.monotonic() < deadline:  # heartbeats bring the counts
        time.sleep(0.2)
    assert local_rows() >= ROWS
    assert all(n["local_socket"] for n in coordinator.status()["nodes"])


@contextmanager
def _hidden(directory: Path) -> Iterator[None]:
    """Move ``directory`` out of sight (as on a host that does not share it), then back."""
    away = directory.with_name(directory.name + "-elsewhere")
    directory.rename(away)
    try:
        yield
    finally:
        away.rename(directory)


def test_consumers_that_cannot_see_the_socket_dir_read_over_flight(feeder):
    coordinator, sockets = feeder
    with _hidden(sockets):
        ids, counts = _static(coordinator.endpoint, "mix")
    _once(ids)
    assert counts["rows_local"] == 0 and counts["rows_flight"] >= ROWS


def test_local_reads_off_reads_over_flight(feeder):
    coordinator, _ = feeder
    ids, counts = _static(coordinator.endpoint, "off", local_reads=False)
    _once(ids)
    assert counts == {"rows_local": 0, "rows_flight": ROWS}
