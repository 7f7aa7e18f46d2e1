"""jobs.parquet_footers: footers of real Parquet files with Iceberg field ids."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from jobs.parquet_footers import describe_file, read_footer, row_group_sizes
from jobs.schema_mapping import iceberg_to_arrow

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "name", StringType(), required=False),
)
ROWS = 1000
GROUP_ROWS = 300


@pytest.fixture()
def data_file(tmp_path: Path) -> str:
    table = pa.table(
        {"id": list(range(ROWS)), "name": [None if i % 10 == 0 else f"n{i}" for i in range(ROWS)]},
        schema=iceberg_to_arrow(SCHEMA),
    )
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, row_group_size=GROUP_ROWS)
    return path.as_uri()


def test_read_footer_is_the_files_metadata(data_file: str) -> None:
    footer = read_footer(PyArrowFileIO(), data_file)
    assert footer.num_rows == ROWS
    assert footer.num_row_groups == 4
    assert footer.equals(pq.read_metadata(data_file.removeprefix("file://")))


def test_describe_file_keys_stats_by_field_id(data_file: str) -> None:
    info = describe_file(PyArrowFileIO(), data_file, SCHEMA)
    assert info.path == data_file and info.partition == ()
    assert info.size == Path(data_file.removeprefix("file://")).stat().st_size
    assert info.record_count == ROWS
    assert info.value_counts == {1: ROWS, 2: ROWS}
    assert info.null_value_counts == {1: 0, 2: ROWS // 10}
    assert int.from_bytes(info.lower_bounds[1], "little") == 0
    assert int.from_bytes(info.upper_bounds[1], "little") == ROWS - 1
    assert len(info.split_offsets) == 4


def test_row_group_sizes_count_only_the_projected_columns(data_file: str) -> None:
    footer = read_footer(PyArrowFileIO(), data_file)
    both = row_group_sizes(footer, {1, 2})
    ids = row_group_sizes(footer, {1})
    names = row_group_sizes(footer, {2})
    assert [rows for rows, _ in both] == [300, 300, 300, 100]
    for i, ((_, b), (_, one), (_, two)) in enumerate(zip(both, ids, names, strict=True)):
        group = footer.row_group(i)
        assert one == group.column(0).total_uncompressed_size
        assert two == group.column(1).total_uncompressed_size
        assert b == one + two
    # no projected column in the file: the row group's whole size
    assert row_group_sizes(footer, {99}) == [
        (footer.row_group(i).num_rows, footer.row_group(i).total_byte_size) for i in range(4)
    ]
