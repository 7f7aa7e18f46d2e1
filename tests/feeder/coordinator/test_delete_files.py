"""Real Iceberg delete files meet the feeder: position deletes are applied, equality
deletes are a SpecError before anything is cached.

The delete files are real (Parquet to the Iceberg spec, committed in a delete
manifest through pyiceberg's snapshot producer: tests/support/delete_files.py);
pyiceberg's own reader agrees with them before the feeder is asked.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from feeder.cli import main as feeder_main
from feeder.client.client import FeederClient
from feeder.coordinator.planning import plan_slices
from jobs.errors import SpecError
from sparkapps.cli import main as icefeed_main
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table
from tests.support.delete_files import add_equality_deletes, add_position_deletes

ROWS_PER_FILE = 3000


def _data_files(table) -> list[str]:
    return sorted(task.file.file_path for task in table.scan().plan_files())


@pytest.fixture()
def position_deleted(catalog):
    """test.feed (2 files x 3000 rows) with rows 0, 7, 2999 of one file deleted; their ids."""
    table = make_table(catalog, files=2, rows_per_file=ROWS_PER_FILE, row_group_rows=500)
    first = _data_files(table)[0]
    with table.io.new_input(first).open() as f:
        first_ids = pq.read_table(f, columns=["id"])["id"]  # that file's rows in file order
    deleted = {first_ids[p].as_py() for p in (0, 7, 2999)}
    table = add_position_deletes(table, first, [0, 7, 2999])
    return table, deleted


def test_position_delete_file_is_real_and_pyiceberg_applies_it(position_deleted):
    table, deleted = position_deleted
    tasks = {t.file.file_path: t for t in table.scan().plan_files()}
    assert sorted(len(t.delete_files) for t in tasks.values()) == [0, 1]
    live = set(table.scan().to_arrow()["id"].to_pylist())
    assert live == set(range(2 * ROWS_PER_FILE)) - deleted and len(deleted) == 3


def test_a_file_with_position_deletes_is_one_slice_the_others_are_cut(position_deleted):
    table, _ = position_deleted
    plans = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=20_000)
    with_deletes = [p for p in plans if p.has_deletes]
    assert len(with_deletes) == 1 and len(with_deletes[0].row_groups) == ROWS_PER_FILE // 500
    assert len(plans) > 2  # the file without deletes is cut into several slices


def test_feeder_serves_exactly_the_live_rows(position_deleted, tmp_path):
    table, deleted = position_deleted
    live = set(range(2 * ROWS_PER_FILE)) - deleted
    with local_feeder(table.catalog, cache_dir=tmp_path / "c", nodes=2) as f:
        assert f.coordinator.status()["rows"] == len(live)
        client = FeederClient(f.endpoint, job="train")
        static = ids_of(client.stream(0, seed=3))
        dynamic = ids_of(client.stream(1, mode="dynamic"))
    assert sorted(static) == sorted(live)
    assert sorted(dynamic) == sorted(live)


def test_feeder_serves_the_live_rows_of_a_projection_and_filter(position_deleted, tmp_path):
    table, deleted = position_deleted
    low = min(deleted)  # the filter drops one deleted row and keeps the others
    live = set(range(low + 1, 2 * ROWS_PER_FILE)) - deleted
    with local_feeder(
        table.catalog, cache_dir=tmp_path / "c", nodes=1, columns=["id"], row_filter=f"id > {low}"
    ) as f:
        client = FeederClient(f.endpoint)
        assert client.schema().names == ["id"]
        rows = ids_of(client.stream(0))
    assert sorted(rows) == sorted(live)


@pytest.fixture()
def equality_deleted(catalog):
    table = make_table(catalog, files=1, rows_per_file=1000, row_group_rows=500)
    return add_equality_deletes(table, "id", [3, 4])


def test_equality_deletes_are_a_spec_error_naming_table_snapshot_and_remedy(equality_deleted):
    table = equality_deleted
    snapshot_id = table.current_snapshot().snapshot_id
    with pytest.raises(SpecError) as err:
        plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=20_000)
    message = str(err.value)
    assert "test.feed" in message and str(snapshot_id) in message
    assert "equality delete" in message and "eq-deletes-" in message
    assert "rewrite_data_files" in message and "snapshot_id" in message


def test_an_earlier_snapshot_without_the_equality_deletes_still_plans(equality_deleted):
    table = equality_deleted
    before = table.current_snapshot().parent_snapshot_id
    plans = plan_slices(table, snapshot_id=before, row_filter=None, columns=None, slice_bytes=1)
    assert sum(p.estimated_rows for p in plans) == 1000


def test_cli_serve_refuses_equality_deletes_before_starting_anything(equality_deleted, capsys):
    snapshot_id = equality_deleted.current_snapshot().snapshot_id
    assert feeder_main(["serve", "test.feed"]) == 2
    err = capsys.readouterr().err
    assert "test.feed" in err and str(snapshot_id) in err and "equality delete" in err
    assert icefeed_main(["feeder", "serve", "test.feed"]) == 2  # serve() resolves before Spark
    assert "rewrite_data_files" in capsys.readouterr().err
