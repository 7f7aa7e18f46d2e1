"""jobs.datafiles: the task-side Parquet writer, run here without Spark on real files."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, LongType, NestedField, StringType

from jobs.data_file_info import DataFileInfo
from jobs.datafiles import TaskPlan, dictionary_columns, write_task

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "cat", StringType(), required=False),
    NestedField(3, "day", DateType(), required=False),
)


def _plan(tmp_path: Path, spec: PartitionSpec, target: int = 1 << 30) -> TaskPlan:
    return TaskPlan(
        prefix=(tmp_path / "data" / "run").as_uri(),
        io_properties={},
        schema_json=SCHEMA.model_dump_json(),
        spec_json=spec.model_dump_json(),
        target_file_bytes=target,
        parquet_options={"compression": "snappy"},
    )


def _batches(n: int, size: int) -> Iterator[pa.RecordBatch]:
    import datetime as dt

    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        yield pa.RecordBatch.from_pydict(
            {
                "id": pa.array(ids, pa.int64()),
                "cat": pa.array([None if i % 7 == 0 else f"c{i % 3}" for i in ids]),
                "day": pa.array([dt.date(2024, 1, 1 + i % 2) for i in ids]),
            }
        )


def _infos(out: Iterator[pa.RecordBatch]) -> list[DataFileInfo]:
    return [DataFileInfo.from_json(s) for b in out for s in b.column(0).to_pylist()]


def _files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*.parquet"))


def test_unpartitioned_task_writes_one_file_with_ids_and_stats(tmp_path: Path) -> None:
    infos = _infos(write_task(_plan(tmp_path, PartitionSpec()), _batches(1000, 300)))
    assert len(infos) == 1
    info = infos[0]
    assert info.record_count == 1000
    assert info.null_value_counts[2] == sum(1 for i in range(1000) if i % 7 == 0)
    assert int.from_bytes(info.lower_bounds[1], "little", signed=True) == 0
    assert int.from_bytes(info.upper_bounds[1], "little", signed=True) == 999
    path = Path(info.path.removeprefix("file://"))
    assert info.size == path.stat().st_size
    ids = [f.metadata[b"PARQUET:field_id"] for f in pq.read_schema(path)]
    assert ids == [b"1", b"2", b"3"]


def test_partitioned_task_writes_one_file_per_partition(tmp_path: Path) -> None:
    spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "cat"))
    infos = _infos(write_task(_plan(tmp_path, spec), _batches(1000, 128)))
    by_partition = {info.partition: info for info in infos}
    assert set(by_partition) == {("c0",), ("c1",), ("c2",), (None,)}
    assert sum(i.record_count for i in infos) == 1000
    for (value,), info in by_partition.items():
        table = pq.read_table(info.path.removeprefix("file://"))
        assert set(table.column("cat").to_pylist()) == {value}
        assert ("cat=null" if value is None else f"cat={value}") in info.path


def test_date_partition_is_stored_as_days(tmp_path: Path) -> None:
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "day"))
    infos = _infos(write_task(_plan(tmp_path, spec), _batches(100, 100)))
    assert sorted(i.partition for i in infos) == [(19723,), (19724,)]  # 2024-01-01, 02


def test_files_roll_over_at_the_target_size(tmp_path: Path) -> None:
    infos = _infos(
        write_task(_plan(tmp_path, PartitionSpec(), target=20_000), _batches(20_000, 2_000))
    )
    assert len(infos) > 2
    assert sum(i.record_count for i in infos) == 20_000
    assert len(_files(tmp_path)) == len(infos)


def test_a_failing_task_deletes_what_it_wrote(tmp_path: Path) -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield from _batches(6_000, 2_000)
        raise RuntimeError("upstream died")

    plan = _plan(tmp_path, PartitionSpec(), target=1_000)  # closes a file per batch
    with pytest.raises(RuntimeError, match="upstream died"):
        list(write_task(plan, failing()))
    assert _files(tmp_path) == []


def test_an_empty_task_writes_nothing(tmp_path: Path) -> None:
    assert _infos(write_task(_plan(tmp_path, PartitionSpec()), iter([]))) == []
    assert _files(tmp_path) == []


partition_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)


@settings(max_examples=100, deadline=None)
@given(
    partition=st.lists(partition_values, max_size=4).map(tuple),
    counts=st.dictionaries(st.integers(1, 500), st.integers(0, 2**40), max_size=5),
    bounds=st.dictionaries(st.integers(1, 500), st.binary(max_size=16), max_size=5),
)
def test_data_file_info_round_trips_through_json(partition, counts, bounds) -> None:
    info = DataFileInfo(
        path="s3://b/t/data/x.parquet",
        size=123,
        record_count=7,
        partition=partition,
        column_sizes=counts,
        value_counts=counts,
        null_value_counts=counts,
        nan_value_counts={},
        lower_bounds=bounds,
        upper_bounds=bounds,
        split_offsets=(4, 100),
    )
    assert DataFileInfo.from_json(info.to_json()) == info


def test_decimal_partition_values_keep_their_scale() -> None:
    info = DataFileInfo(
        path="p",
        size=1,
        record_count=1,
        partition=(Decimal("1.50"),),
        column_sizes={},
        value_counts={},
        null_value_counts={},
        nan_value_counts={},
        lower_bounds={},
        upper_bounds={},
    )
    assert str(DataFileInfo.from_json(info.to_json()).partition[0]) == "1.50"


def test_plan_repr_never_shows_io_properties(tmp_path: Path) -> None:
    plan = TaskPlan(
        prefix="s3://b/p",
        io_properties={"s3.secret-access-key": "sekrit"},
        schema_json="{}",
        spec_json="{}",
        target_file_bytes=1,
        parquet_options={},
    )
    assert "sekrit" not in repr(plan)


def test_dictionary_only_for_repetitive_columns() -> None:
    n = 10_000
    batch = pa.RecordBatch.from_pydict(
        {
            "unique_id": pa.array(range(n), pa.int64()),
            "category": pa.array([f"c{i % 10}" for i in range(n)]),
            "measure": pa.array([i / 7 for i in range(n)]),
            "all_null": pa.array([None] * n, pa.string()),
            "flag": pa.array([i % 2 == 0 for i in range(n)]),
        }
    )
    assert dictionary_columns(batch) == ["category", "all_null"]


def test_written_files_use_dictionaries_where_chosen(tmp_path: Path) -> None:
    infos = _infos(write_task(_plan(tmp_path, PartitionSpec()), _batches(50_000, 25_000)))
    meta = pq.ParquetFile(infos[0].path.removeprefix("file://")).metadata
    encodings = {
        meta.schema.column(i).name: meta.row_group(0).column(i).encodings
        for i in range(meta.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["cat"]
    assert "RLE_DICTIONARY" not in encodings["id"]
