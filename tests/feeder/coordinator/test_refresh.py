"""Incremental refresh (issue 21 item 2), end to end with real parts.

``feeder.serve`` on the session's Spark (local mode, real data nodes as Spark
tasks, real Flight on 127.0.0.1) follows a table of the embedded SQLite catalog
that pyiceberg appends to and deletes from between epochs. A refresh caches only
the appended data files (the nodes' storage counters, read after a fresh
heartbeat), jobs mid-epoch finish on their snapshot, every job's next epoch reads
the new one exactly once, a pinned job keeps its snapshot, and a request for a
snapshot the feeder does not serve is a clear error naming both.
"""

from __future__ import annotations

import urllib.request
from itertools import islice

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.session import serve
from feeder.torch import FeederDataset
from jobs.errors import AuthError, SpecError
from tests.feeder.local_feeder import ids_of
from tests.feeder.tables import make_table, sample_arrow

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FILES, PER_FILE = 4, 3000
ROWS = FILES * PER_FILE


def _files(table, snapshot_id: int) -> dict[str, int]:
    """Data file path -> size in bytes, of ``snapshot_id``."""
    return {
        t.file.file_path: t.file.file_size_in_bytes
        for t in table.scan(snapshot_id=snapshot_id).plan_files()
    }


def _serve(spark, catalog, tmp_path, **settings):
    """A feeder of ``test.feed`` on the session's Spark, heartbeating twice a second."""
    return serve(
        "test.feed",
        spark=spark,
        catalog=catalog,
        heartbeat_seconds=0.5,
        cache_dir=tmp_path / "cache",
        **settings,
    )


def _snapshots(feeder) -> list[int | None]:
    return [s["snapshot_id"] for s in feeder.status()["snapshots"]]


def test_a_refresh_caches_only_the_appended_files_and_moves_jobs_at_their_epoch_boundary(
    spark, catalog, tmp_path
):
    table = make_table(catalog, files=FILES, rows_per_file=PER_FILE, row_group_rows=500)
    first = table.current_snapshot().snapshot_id
    # a slice per file: each slice reads its file once
    with _serve(spark, catalog, tmp_path, nodes=2, slice_bytes=10**7, lease_seconds=120) as f:
        f.wait_ready(300)
        before = f.fresh_status()
        read_first = before["storage_bytes_read"]
        assert before["snapshot_id"] == first and before["rows"] == ROWS and read_first > 0

        # two jobs mid-epoch (static and dynamic) and one that pins the first snapshot
        # (slice shuffle in batches of 256 rows, so a few batches are a part of the epoch)
        mid = {"shuffle": "slice", "unit": 256}
        static_mid = FeederClient(f.endpoint, job="static-mid").stream(0, seed=1, **mid)
        dynamic_mid = FeederClient(f.endpoint, job="dynamic-mid").stream(
            0, mode="dynamic", seed=2, **mid
        )
        static_ids = ids_of(islice(static_mid, 3))
        dynamic_ids = ids_of(islice(dynamic_mid, 3))
        assert 0 < len(static_ids) < ROWS and 0 < len(dynamic_ids) < ROWS
        pinned = FeederClient(f.endpoint, job="pinned")
        assert sorted(ids_of(pinned.stream(0, snapshot_id=first))) == list(range(ROWS))

        # append a quarter of the table (one file of four), then refresh
        table.append(sample_arrow(PER_FILE, start=ROWS))
        second = table.current_snapshot().snapshot_id
        appended = {p: n for p, n in _files(table, second).items() if p not in _files(table, first)}
        original = sum(_files(table, first).values())
        assert len(appended) == 1
        assert f.refresh() == second
        f.wait_ready(300)
        after = f.fresh_status()
        (record,) = after["refreshes"]
        read_by_refresh = after["storage_bytes_read"] - read_first
        # the refresh read the appended file and nothing else: k % appended -> k % of the
        # bytes the first load read (both read a file whole, plus its footer once more:
        # pyarrow reads the last 64 KiB first, which on these 25 KB files is all of it)
        appended_bytes = sum(appended.values())
        assert record["storage_bytes_read"] == read_by_refresh
        assert appended_bytes <= read_by_refresh <= 2 * appended_bytes
        assert read_by_refresh / read_first == pytest.approx(appended_bytes / original, rel=0.02)
        assert record["kept_slices"] == before["slices"] and record["added_slices"] > 0
        assert record["from_snapshot_id"] == first and record["snapshot_id"] == second
        assert after["snapshot_id"] == second and after["rows"] == ROWS + PER_FILE
        assert _snapshots(f) == [first, second]  # the first is still read mid-epoch

        # jobs mid-epoch finish on the first snapshot, every row once
        static_ids += ids_of(static_mid)
        dynamic_ids += ids_of(dynamic_mid)
        assert sorted(static_ids) == list(range(ROWS))
        assert sorted(dynamic_ids) == list(range(ROWS))
        # a pinned job keeps its snapshot while it runs
        assert sorted(ids_of(pinned.stream(1, snapshot_id=first))) == list(range(ROWS))

        # at their next epoch boundary every job reads the new snapshot, every row once
        grown = list(range(ROWS + PER_FILE))
        static_client = FeederClient(f.endpoint, job="static-mid")
        parts = [ids_of(static_client.stream(1, rank=r, world_size=2, seed=1)) for r in (0, 1)]
        assert sorted(parts[0] + parts[1]) == grown
        dynamic_client = FeederClient(f.endpoint, job="dynamic-mid")
        assert sorted(ids_of(dynamic_client.stream(1, mode="dynamic", seed=2))) == grown
        assert after["jobs"]["static-mid"]["snapshot_id"] == first
        assert f.status()["jobs"]["static-mid"]["snapshot_id"] == second

        # another snapshot than the epoch reads, or one not served: a clear error naming both
        with pytest.raises(SpecError, match=rf"reads snapshot {second}.*names snapshot {first}"):
            list(static_client.stream(1, snapshot_id=first))
        with pytest.raises(SpecError, match=rf"snapshot 12345.*serves snapshot\(s\).*{second}"):
            list(FeederClient(f.endpoint, job="late").stream(0, snapshot_id=12345))

        # the pinned job moves on: no job reads the first snapshot, it is retired
        assert sorted(ids_of(pinned.stream(2))) == grown
        assert f.coordinator.wait_for(lambda s: len(s["snapshots"]) == 1, 30), _snapshots(f)
        assert _snapshots(f) == [second]
        assert f.fresh_status()["storage_bytes_read"] == after["storage_bytes_read"]


def test_a_refresh_after_a_delete_reads_nothing_and_drops_the_removed_files_slices(
    spark, catalog, tmp_path
):
    table = make_table(catalog, files=FILES, rows_per_file=PER_FILE, row_group_rows=500)
    with _serve(spark, catalog, tmp_path, nodes=1, slice_bytes=40_000) as f:
        f.wait_ready(300)
        before = f.fresh_status()
        first = before["snapshot_id"]
        # a training job stops mid-epoch; its resume state names the epoch's snapshot
        dataset = FeederDataset(
            f.endpoint, batch_size=256, job="train", shuffle="slice", prefetch=0
        )
        batches = iter(dataset)
        for _ in range(3):
            next(batches)
        state = dataset.state_dict()
        assert state["snapshot_id"] == first and state["rows_consumed"] == 3 * 256
        dataset.close()

        table.delete("id < 3000")  # the first file, whole: dropped, nothing rewritten
        answer = f.refresh_report()
        assert answer["changed"] and answer["added_slices"] == 0
        assert answer["kept_slices"] < before["slices"]
        f.wait_ready(60)

        client = FeederClient(f.endpoint, job="train")
        assert sorted(ids_of(client.stream(1))) == list(range(PER_FILE, ROWS))
        assert f.coordinator.wait_for(lambda s: len(s["snapshots"]) == 1, 30)
        # resuming the stopped epoch: its snapshot is no longer served, an error naming both
        resumed = FeederDataset(f.endpoint, batch_size=256, job="train", shuffle="slice")
        resumed.load_state_dict(state)
        with pytest.raises(SpecError, match=rf"snapshot {first}.*{answer['snapshot_id']}"):
            next(iter(resumed))
        # the nodes delete the removed file's slices from their caches
        dropped = before["slices"] - answer["kept_slices"]
        assert f.coordinator.wait_for(
            lambda s: s["nodes"][0]["slices_cached"] == before["slices"] - dropped, 30
        ), f.status()["nodes"]
        after = f.fresh_status()
        assert after["storage_bytes_read"] == before["storage_bytes_read"]
        assert after["bytes_cached"] < before["bytes_cached"]
        assert f.refresh_report() == {"changed": False, "snapshot_id": answer["snapshot_id"]}


def test_a_following_feeder_serves_each_new_snapshot_by_itself(spark, catalog, tmp_path):
    table = make_table(catalog, files=1, rows_per_file=PER_FILE, row_group_rows=500)
    with _serve(spark, catalog, tmp_path, nodes=1, follow_seconds=0.5, metrics_port=0) as f:
        f.wait_ready(300)
        table.append(sample_arrow(PER_FILE, start=PER_FILE))
        new = table.current_snapshot().snapshot_id
        assert f.coordinator.wait_for(lambda s: s["snapshot_id"] == new and s["ready"], 120)
        client = FeederClient(f.endpoint, job="train")
        assert sorted(ids_of(client.stream(0))) == list(range(2 * PER_FILE))
        (record,) = f.status()["refreshes"]  # later polls found nothing new
        assert f.metrics is not None
        url = f"http://127.0.0.1:{f.metrics.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    assert f'icefeed_snapshot_info{{snapshot_id="{new}"}} 1.0' in text
    assert "icefeed_refreshes_total 1.0" in text
    read = record["storage_bytes_read"]
    assert read > 0 and f"icefeed_refresh_storage_bytes_read_total {float(read)}" in text


def test_a_rank_epochs_behind_the_others_finishes_its_epoch_on_the_removed_files_slices(
    spark, catalog, tmp_path
):
    table = make_table(catalog, files=FILES, rows_per_file=PER_FILE, row_group_rows=500)
    with _serve(spark, catalog, tmp_path, nodes=1, slice_bytes=40_000) as f:
        f.wait_ready(300)
        first = f.status()["snapshot_id"]
        client = FeederClient(f.endpoint, job="ddp")
        ddp = {"seed": 3, "world_size": 2, "shuffle": "slice", "unit": 256}
        # rank 1 stalls early in epoch 0; rank 0 reads its whole part
        lagging = client.stream(0, rank=1, **ddp)
        rank1 = ids_of(islice(lagging, 2))
        rank0 = ids_of(client.stream(0, rank=0, **ddp))
        cached = f.fresh_status()["nodes"][0]["slices_cached"]

        table.delete("id < 3000")  # the first file, whole
        second = f.refresh()
        f.wait_ready(60)
        # rank 0 runs two epochs ahead on the new snapshot, every row of it once
        ahead = {epoch: ids_of(client.stream(epoch, rank=0, **ddp)) for epoch in (1, 2)}
        assert all(len(part) == (ROWS - PER_FILE) // 2 for part in ahead.values())
        # rank 1 may still read epoch 0: its snapshot and the removed file's slices stay,
        # also once every node heard everything the coordinator had to tell it
        assert _snapshots(f) == [first, second]
        assert f.fresh_status()["nodes"][0]["slices_cached"] == cached
        rank1 += ids_of(lagging)
        assert sorted(rank0 + rank1) == list(range(ROWS))  # epoch 0: every row once

        # rank 1 moves on: nobody can read the first snapshot, it is retired and the
        # removed file's slices are dropped from the cache
        part1 = ids_of(client.stream(1, rank=1, **ddp))
        assert sorted(ahead[1] + part1) == list(range(PER_FILE, ROWS))
        assert f.coordinator.wait_for(lambda s: len(s["snapshots"]) == 1, 30), _snapshots(f)
        assert f.coordinator.wait_for(lambda s: s["nodes"][0]["slices_cached"] < cached, 30)


def test_an_unknown_rank_asking_for_an_epoch_whose_snapshot_was_forgotten_gets_a_clear_error(
    spark, catalog, tmp_path
):
    table = make_table(catalog, files=1, rows_per_file=PER_FILE, row_group_rows=500)
    with _serve(spark, catalog, tmp_path, nodes=1) as f:
        f.wait_ready(300)
        first = f.status()["snapshot_id"]
        client = FeederClient(f.endpoint, job="ddp")
        assert len(ids_of(client.stream(0, rank=0, world_size=2))) == PER_FILE // 2
        table.append(sample_arrow(PER_FILE, start=PER_FILE))
        second = f.refresh()
        f.wait_ready(60)
        # rank 0 runs on alone, past the bindings a feeder keeps; rank 1 never asked
        for epoch in range(1, 18):
            assert len(ids_of(client.stream(epoch, rank=0, world_size=2))) == PER_FILE
        # which snapshot epoch 0 read is forgotten: an error, not rows of another snapshot
        forgotten = rf"epoch 0: .*snapshot\(s\) \[{first}\], not the current snapshot {second}"
        with pytest.raises(SpecError, match=forgotten):
            list(client.stream(0, rank=1, world_size=2))


def test_a_forgotten_jobs_epoch_on_a_retired_snapshot_ends_with_an_error_not_missing_rows(
    spark, catalog, tmp_path
):
    table = make_table(catalog, files=FILES, rows_per_file=PER_FILE, row_group_rows=500)
    # a static consumer calls the coordinator only at its epoch's start: a job idle for
    # idle_seconds is forgotten, and with it which snapshot its running epoch reads
    limits = CoordinatorLimits(idle_seconds=1.0)
    with _serve(spark, catalog, tmp_path, nodes=1, slice_bytes=40_000, limits=limits) as f:
        f.wait_ready(300)
        first = f.status()["snapshot_id"]
        client = FeederClient(f.endpoint, job="long", retry_seconds=5)
        running = client.stream(0, shuffle="slice", unit=256)
        got = ids_of(islice(running, 2))
        table.delete("id < 3000")
        f.refresh()
        f.wait_ready(60)
        assert f.coordinator.wait_for(lambda s: "long" not in s["jobs"], 30)
        assert f.coordinator.wait_for(lambda s: len(s["snapshots"]) == 1, 30)
        f.fresh_status()  # the node heard that the first snapshot is retired
        with pytest.raises(AuthError, match=rf"snapshot {first}.*start the next epoch"):
            got += ids_of(running)
        assert len(got) < ROWS
