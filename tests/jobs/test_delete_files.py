"""Tables with real delete files on the jobs side: finding equality deletes, overwriting.

The delete files are real (tests/support/delete_files.py: Parquet to the
Iceberg spec, committed in a delete manifest through pyiceberg).
"""

from __future__ import annotations

import pytest

from jobs.commit import commit_staged
from jobs.delete_files import equality_delete_paths, equality_deletes_error
from jobs.errors import SpecError
from jobs.writer import stage_write, write_iceberg
from tests.support.delete_files import add_equality_deletes, add_position_deletes

TABLE = "test.deleted"


def _write_ids(spark, catalog, n: int, start: int = 0):
    write_iceberg(
        spark.range(start, start + n, numPartitions=1).select("id"), TABLE, catalog=catalog
    )
    return catalog.load_table(TABLE)


@pytest.mark.spark
def test_equality_delete_paths_and_error_name_only_equality_delete_files(spark, catalog):
    table = _write_ids(spark, catalog, 10)
    (data_file,) = [t.file.file_path for t in table.scan().plan_files()]
    table = add_position_deletes(table, data_file, [1])
    assert equality_delete_paths(table, None) == []
    assert equality_deletes_error(table, None) is None
    table = add_equality_deletes(table, "id", [2])
    (path,) = equality_delete_paths(table, None)
    assert "eq-deletes-" in path
    before = table.current_snapshot().parent_snapshot_id
    assert equality_delete_paths(table, before) == []  # per snapshot
    error = equality_deletes_error(table, None)
    assert isinstance(error, SpecError)
    assert TABLE in str(error) and str(table.current_snapshot().snapshot_id) in str(error)


@pytest.mark.spark
def test_overwrite_of_a_table_with_position_deletes_keeps_only_the_new_rows(spark, catalog):
    table = _write_ids(spark, catalog, 10)
    (data_file,) = [t.file.file_path for t in table.scan().plan_files()]
    table = add_position_deletes(table, data_file, [0, 1])
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == list(range(2, 10))
    staged = stage_write(
        spark.range(100, 103, numPartitions=1).select("id"),
        TABLE,
        catalog=catalog,
        mode="overwrite",
    )
    commit_staged(staged, catalog=catalog)
    ids = catalog.load_table(TABLE).scan().to_arrow()["id"].to_pylist()
    assert sorted(ids) == [100, 101, 102]


@pytest.mark.spark
def test_overwrite_of_a_table_with_equality_deletes_names_table_snapshot_and_remedy(spark, catalog):
    table = add_equality_deletes(_write_ids(spark, catalog, 10), "id", [3])
    snapshot_id = table.current_snapshot().snapshot_id
    staged = stage_write(
        spark.range(100, 103, numPartitions=1).select("id"),
        TABLE,
        catalog=catalog,
        mode="overwrite",
    )
    with pytest.raises(SpecError) as err:
        commit_staged(staged, catalog=catalog)
    message = str(err.value)
    assert TABLE in message and str(snapshot_id) in message
    assert "equality delete" in message and "rewrite_data_files" in message
    table = catalog.load_table(TABLE)
    assert table.current_snapshot().snapshot_id == snapshot_id  # nothing committed
    staged_paths = [info.path for info in staged.data_files]
    assert staged_paths and all(table.io.new_input(p).exists() for p in staged_paths)
