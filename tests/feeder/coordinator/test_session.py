"""``feeder.serve`` (``feeder.coordinator.session.serve``) end to end: the session Spark
(local[2]) runs the data nodes as Spark jobs.

A feeder with 2 nodes takes both task slots of the shared SparkSession; each
test stops its feeder before the next one starts.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import feeder
from feeder.client.client import FeederClient
from feeder.coordinator.session import serve
from jobs.errors import SpecError
from tests.feeder.local_feeder import ids_of
from tests.feeder.tables import make_table, sample_arrow

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROWS = 24_000
TOKEN = "serve-test-token"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-home")


@pytest.fixture(scope="module")
def module_catalog(home):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (home / "warehouse").mkdir()
    cat = SqlCatalog("serve", **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=3, rows_per_file=ROWS // 3, row_group_rows=1000)
    return cat


def test_serve_exactly_once_static_and_dynamic_storage_once_and_snapshot_isolation(
    spark, module_catalog, home
):
    with serve(
        "test.feed",
        spark=spark,
        catalog=module_catalog,
        nodes=2,
        slice_bytes=60_000,
        token=TOKEN,
        cache_dir=home / "cache",
        heartbeat_seconds=0.5,
    ) as f:
        f.wait_ready(120)
        status = f.status()
        assert status["ready"] and status["rows"] == ROWS and status["nodes_alive"] == 2
        assert status["slices"] >= 6 and f.endpoint.startswith("grpc://127.0.0.1:")
        assert TOKEN not in repr(f) and TOKEN not in str(status)

        client = FeederClient(f.endpoint, token=TOKEN, job="train")
        parts = [ids_of(client.stream(0, rank=r, world_size=2, seed=3)) for r in range(2)]
        assert len(parts[0]) == len(parts[1]) == ROWS // 2
        assert sorted(parts[0] + parts[1]) == list(range(ROWS))
        dynamic = ids_of(client.stream(1, mode="dynamic", seed=3))
        assert sorted(dynamic) == list(range(ROWS)) and dynamic != parts[0] + parts[1]

        # storage is read once: a further epoch and another job read only the cache
        # node counters travel with heartbeats: fresh_status waits for one from each node
        heartbeats = {n["node_id"]: n["heartbeats"] for n in f.status()["nodes"]}
        fresh = f.fresh_status()
        assert all(n["heartbeats"] > heartbeats[n["node_id"]] for n in fresh["nodes"])
        read = fresh["storage_bytes_read"]
        assert read > 0
        other = FeederClient(f.endpoint, token=TOKEN, job="eval")
        assert len(ids_of(other.stream(2, columns=["id"], shuffle=False))) == ROWS
        assert f.fresh_status()["storage_bytes_read"] == read

        # snapshot isolation: a commit while serving changes nothing served
        pinned = f.snapshot_id
        table = module_catalog.load_table("test.feed")
        table.append(sample_arrow(500, start=ROWS))
        assert table.current_snapshot().snapshot_id != pinned
        assert sorted(ids_of(client.stream(3, seed=1))) == list(range(ROWS))
        assert f.status()["snapshot_id"] == pinned

        # refresh picks the new snapshot up at the job's next epoch (same endpoint and
        # session); an epoch the job read before keeps its snapshot
        endpoint, session = f.endpoint, f.status()["session"]
        assert f.refresh() == table.current_snapshot().snapshot_id
        f.wait_ready(120)
        assert f.endpoint == endpoint and f.status()["session"] == session
        assert sorted(ids_of(client.stream(4, seed=1))) == list(range(ROWS + 500))
        assert sorted(ids_of(client.stream(0, seed=1))) == list(range(ROWS))
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_serve_without_row_copies_caches_only_ipc_files(spark, module_catalog, home):
    cache_dir = home / "cache-no-row-copy"
    with serve(
        "test.feed",
        spark=spark,
        catalog=module_catalog,
        nodes=1,
        slice_bytes=60_000,
        cache_dir=cache_dir,
        row_copy=False,
    ) as f:
        f.wait_ready(120)
        status = f.status()
        files = [p.name for p in cache_dir.rglob("slice-*") if p.suffix != ".crc32"]
        assert len(files) == status["slices"] >= 2
        assert all(name.endswith(".arrow") for name in files)  # no .rows copies
        shuffled = ids_of(FeederClient(f.endpoint, job="t").stream(0, seed=5))
        assert sorted(shuffled) == list(range(status["rows"])) != shuffled


def test_serve_with_a_local_dir_reads_every_row_from_the_cache_files(spark, module_catalog):
    sockets = Path(tempfile.mkdtemp(prefix="icefeed-serve-", dir="/tmp"))  # short socket paths
    try:
        options = {"nodes": 2, "slice_bytes": 60_000, "token": TOKEN, "local_dir": sockets}
        with serve("test.feed", spark=spark, catalog=module_catalog, **options) as f:
            f.wait_ready(120)
            status = f.status()
            assert all(n["local_socket"].startswith(str(sockets)) for n in status["nodes"])
            rows = status["rows"]  # ROWS, plus what the refresh test before this one appended
            assert rows >= ROWS
            with FeederClient(f.endpoint, token=TOKEN, job="local") as client:
                ranks = [ids_of(client.stream(0, rank=r, world_size=2)) for r in range(2)]
                dynamic = ids_of(client.stream(1, mode="dynamic", shuffle="off"))
                counts = client.read_counts()
            assert sorted(ranks[0] + ranks[1]) == list(range(rows)) == sorted(dynamic)
            assert counts["rows_flight"] == 0 and counts["rows_local"] >= 2 * rows
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": "test.nope"}, "not found"),
        ({"table": "nonamespace"}, "not found"),
        ({"columns": ["id", "nope"]}, "unknown column"),
        ({"row_filter": "id >>> 3"}, "row_filter"),
        ({"row_filter": "nope > 3"}, "row_filter"),
        ({"snapshot_id": 12345}, "does not exist"),
        ({"nodes": 0}, "nodes"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_node_starts(spark, module_catalog, kwargs, match):
    args = {"table": "test.feed", **kwargs}
    with pytest.raises(SpecError, match=match):
        serve(args.pop("table"), spark=spark, catalog=module_catalog, **args)
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_empty_table_serves_an_empty_epoch(spark, module_catalog, home):
    module_catalog.create_table("test.empty", schema=sample_arrow(1).schema)
    with serve(
        "test.empty", spark=spark, catalog=module_catalog, nodes=1, cache_dir=home / "e"
    ) as f:
        f.wait_ready(60)
        assert f.status()["rows"] == 0 and f.snapshot_id is None
        client = FeederClient(f.endpoint)
        assert list(client.stream(0)) == []
        assert list(client.stream(0, mode="dynamic")) == []
        assert client.schema().names == ["id", "x", "name", "cat"]


def test_feeder_serve_is_the_session_function():
    from feeder.coordinator import session

    assert feeder.serve is session.serve and feeder.Feeder is session.Feeder


def test_cli_serve_runs_in_the_foreground_until_sigterm(spark, catalog, tmp_path):
    """``feeder.cli.main(["serve", ...])``, what ``python -m feeder serve`` runs, called
    in-process (it reuses the session's SparkSession); tests/feeder/test_cli.py runs the
    real ``python -m feeder serve`` process."""
    import os
    import signal
    import threading
    import time

    from feeder.cli import main

    make_table(catalog, "test.fg", files=1, rows_per_file=2000, row_group_rows=500)
    endpoint_file = tmp_path / "endpoint"
    seen: dict = {}

    def consumer() -> None:
        deadline = time.monotonic() + 120
        while not endpoint_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a file the server writes atomically, bounded
        if endpoint_file.exists():
            client = FeederClient(endpoint_file.read_text().strip())
            seen["status"] = client.status()
            seen["rows"] = len(ids_of(client.stream(0)))
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=consumer)
    thread.start()
    code = main(
        [
            "serve",
            "test.fg",
            "--nodes",
            "1",
            "--endpoint-file",
            str(endpoint_file),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    thread.join(30)
    assert code == 0
    assert seen["status"]["ready"] and seen["rows"] == 2000
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_a_journal_of_a_refreshed_session_replans_its_snapshots_to_the_same_slice_ids(
    catalog, tmp_path
):
    from feeder.coordinator.config import FeederConfig
    from feeder.coordinator.journal import Journal, session_identity
    from feeder.coordinator.session import _resolve_session, resolve
    from feeder.coordinator.snapshots import LiveSnapshots

    table = make_table(catalog, files=3, rows_per_file=1000, row_group_rows=500)
    config = FeederConfig(table="test.feed", slice_bytes=20_000)
    first = resolve(config, catalog)
    journal = Journal(tmp_path / "journal")
    journal.begin(session_identity(first, slice_bytes=config.slice_bytes))
    # version 1's state, and version 2's before a refresh: the first snapshot alone
    live, identity = _resolve_session(config, catalog, Journal(journal.path))
    assert live.state_text() == LiveSnapshots(first).state_text()

    table.delete("id < 1000")  # the first file, whole
    table.append(sample_arrow(1000, start=3000))
    before = LiveSnapshots(first)
    before.add(resolve(config, catalog))
    journal.save(None, snapshots=before.state_text())
    table.append(sample_arrow(1000, start=4000))  # the table moves on while it is down

    live, again = _resolve_session(config, catalog, Journal(journal.path))
    assert again == identity and live.state_text() == before.state_text()
    assert live.plans == before.plans and live.newest == before.newest
    # other arguments: a fresh session at the current snapshot
    other = FeederConfig(table="test.feed", slice_bytes=30_000)
    fresh, fresh_identity = _resolve_session(other, catalog, Journal(journal.path))
    assert fresh.live() == [table.current_snapshot().snapshot_id]
    assert fresh_identity != identity
