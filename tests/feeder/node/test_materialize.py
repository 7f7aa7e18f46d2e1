"""Materialising slices of a real Iceberg table: projection, filter, deletes path, byte counts."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feeder.coordinator.planning import plan_slices
from feeder.node.materialize import SliceSource
from jobs.errors import FeederError
from tests.feeder.tables import make_table, sample_arrow


def expected(table, row_filter, columns):
    return table.scan(row_filter=row_filter, selected_fields=tuple(columns)).to_arrow()


@pytest.mark.parametrize(
    ("row_filter", "columns"),
    [(None, None), ("cat < 3", ["id", "name"]), ("id >= 1234 and x < 2000.0", ["x", "id"])],
)
def test_slices_together_equal_the_pyiceberg_scan(catalog, row_filter, columns):
    table = make_table(catalog, files=2, rows_per_file=3000, row_group_rows=500)
    snap = table.current_snapshot().snapshot_id
    plans = plan_slices(
        table, snapshot_id=snap, row_filter=row_filter, columns=columns, slice_bytes=20_000
    )
    assert len(plans) > 4
    source = SliceSource(table, snapshot_id=snap, row_filter=row_filter, columns=columns)
    parts = [source.materialize(p) for p in plans]
    got = pa.concat_tables([m.table for m in parts])
    want = expected(table, row_filter or "True", columns or ("*",)).cast(source.schema())
    assert got.schema == source.schema()
    assert got.sort_by("id").equals(want.sort_by("id"))
    assert all(m.storage_bytes > 0 for m in parts)


def test_storage_bytes_count_only_what_is_read(catalog):
    # big enough that the reader's 64 KiB speculative footer read is not the whole file
    table = make_table(catalog, files=1, rows_per_file=40_000, row_group_rows=10_000)
    plans = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=1)
    assert len(plans) == 4
    source = SliceSource(table, snapshot_id=None, row_filter=None, columns=None)
    one = source.materialize(plans[0]).storage_bytes
    file_size = table.io.new_input(plans[0].file_path).__len__()
    assert 0 < one < file_size / 2
    assert source.storage.total == one
    for plan in plans[1:]:
        source.materialize(plan)
    assert file_size < source.storage.total < file_size + 4 * 65536


def test_whole_file_path_for_files_with_deletes_matches(catalog):
    # pyiceberg cannot write delete files; this pins the ArrowScan path (used for
    # files that have them) against the row-group path on the same file
    table = make_table(catalog, files=1, rows_per_file=2000, row_group_rows=500)
    plans = plan_slices(
        table, snapshot_id=None, row_filter="cat = 2", columns=["id"], slice_bytes=1 << 30
    )
    source = SliceSource(table, snapshot_id=None, row_filter="cat = 2", columns=["id"])
    plain = source.materialize(plans[0]).table
    whole = source.materialize(dataclasses.replace(plans[0], has_deletes=True)).table
    assert whole.equals(plain)
    assert pc.all(pc.equal(pc.modulo(plain["id"], 7), 2)).as_py()


def test_snapshot_is_pinned_after_a_commit(catalog):
    table = make_table(catalog, files=1, rows_per_file=1000, row_group_rows=1000)
    snap = table.current_snapshot().snapshot_id
    plans = plan_slices(table, snapshot_id=snap, row_filter=None, columns=None, slice_bytes=1 << 30)
    table.overwrite(sample_arrow(10, start=50_000))
    source = SliceSource(
        catalog.load_table("test.feed"), snapshot_id=snap, row_filter=None, columns=None
    )
    assert source.materialize(plans[0]).table.num_rows == 1000


def test_from_metadata_like_a_data_node(catalog):
    table = make_table(catalog, files=1, rows_per_file=800, row_group_rows=400)
    snap = table.current_snapshot().snapshot_id
    plans = plan_slices(table, snapshot_id=snap, row_filter=None, columns=["id"], slice_bytes=1)
    source = SliceSource.from_metadata(
        table.metadata_location,
        io_properties={},
        snapshot_id=snap,
        row_filter=None,
        columns=["id"],
    )
    assert [source.materialize(p).table.num_rows for p in plans] == [400, 400]


def test_plan_for_a_file_outside_the_snapshot_is_refused(catalog):
    table = make_table(catalog, files=1, rows_per_file=100, row_group_rows=100)
    plans = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=1)
    source = SliceSource(table, snapshot_id=None, row_filter=None, columns=None)
    bad = dataclasses.replace(plans[0], file_path="file:///etc/passwd")
    with pytest.raises(FeederError, match="not part of snapshot"):
        source.materialize(bad)
