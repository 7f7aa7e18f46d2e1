"""jobs.spark_parquet: the opt-in engine where Spark's own Parquet writer writes the
data files and their footers give the DataFile metadata."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import ListType, LongType, NestedField, StringType
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.errors import CommitError, SpecError
from jobs.spark_parquet import check_writable, local_path, write_options
from jobs.writer import WriteEngine, find_run, write_iceberg
from tests.jobs.test_writer import ALL_TYPES, _all_types_rows, _fail_once_udf, _ids, _sorted

PRIMITIVE = T.StructType([f for f in ALL_TYPES.fields if f.name not in ("arr", "m", "st")])
SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "tags", ListType(3, StringType(), element_required=False)),
)


def test_partitioned_nested_or_remote_tables_are_refused_naming_why() -> None:
    spec = PartitionSpec(PartitionField(1, 1000, IdentityTransform(), "id"))
    with pytest.raises(SpecError) as err:
        check_writable(SCHEMA, spec, "s3://bucket/wh/t", table="ns.t")
    message = str(err.value)
    assert "partitioned" in message and "nested columns: tags" in message
    assert "s3://bucket/wh/t" in message and "engine='arrow'" in message
    flat = Schema(NestedField(1, "id", LongType(), required=True))
    check_writable(flat, UNPARTITIONED_PARTITION_SPEC, "file:///tmp/wh/t", table="ns.t")
    check_writable(flat, UNPARTITIONED_PARTITION_SPEC, "/tmp/wh/t", table="ns.t")


def test_write_options_map_the_tables_codec_to_sparks() -> None:
    zstd = write_options({"compression": "zstd", "compression_level": 1})
    assert zstd["compression"] == "zstd"
    assert zstd["parquet.compression.codec.zstd.level"] == "1"
    assert write_options({"compression": "none"})["compression"] == "none"
    assert write_options({"compression": "lz4"})["compression"] == "lz4_raw"
    with pytest.raises(SpecError, match="codec 'lzo'"):
        write_options({"compression": "lzo"})


def test_local_path_of_file_uris() -> None:
    assert local_path("file:///tmp/a%20b/c") == "/tmp/a b/c"
    assert local_path("file:/tmp/x") == "/tmp/x"
    assert local_path("/tmp/x") == "/tmp/x"


@pytest.mark.spark
def test_every_primitive_type_round_trips_with_field_ids_and_stats(spark, catalog) -> None:
    rows = [row[: len(PRIMITIVE.fields)] for row in _all_types_rows(50)]  # arr, m, st come last
    df = spark.createDataFrame(rows, PRIMITIVE).repartition(2)
    result = write_iceberg(df, "test.sp_types", catalog=catalog, engine="spark")
    assert result.rows == 50 and result.data_files >= 1

    table = catalog.load_table("test.sp_types")
    assert str(table.schema().find_field("ts").field_type) == "timestamptz"
    assert str(table.schema().find_field("i8").field_type) == "int"
    assert _sorted(table.scan().to_arrow()) == _sorted(df.toArrow())

    files = [t.file for t in table.scan().plan_files()]
    assert sum(f.record_count for f in files) == 50
    id_field = table.schema().find_field("id").field_id
    lows = [int.from_bytes(f.lower_bounds[id_field], "little", signed=True) for f in files]
    highs = [int.from_bytes(f.upper_bounds[id_field], "little", signed=True) for f in files]
    assert min(lows) == 0 and max(highs) == 49
    s_field = table.schema().find_field("s").field_id
    assert sum(f.null_value_counts[s_field] for f in files) == 10

    parquet = pq.ParquetFile(local_path(files[0].file_path))
    arrow_schema = parquet.schema_arrow
    for field in table.schema().fields:
        assert (
            arrow_schema.field(field.name).metadata[b"PARQUET:field_id"]
            == str(field.field_id).encode()
        )
    assert str(arrow_schema.field("ts").type) == "timestamp[us, tz=UTC]"  # not INT96
    assert str(arrow_schema.field("i8").type) == "int32"
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    # the scan planner prunes on the footer statistics
    assert len(table.scan(row_filter="id >= 45").to_arrow()) == 5


@pytest.mark.spark
def test_only_data_files_stay_and_a_rerun_writes_nothing(
    spark, catalog, disk_files, snapshot_files
) -> None:
    first = write_iceberg(
        _ids(spark, 300), "test.sp_rerun", catalog=catalog, engine="spark", run_id="r1"
    )
    again = write_iceberg(
        _ids(spark, 300), "test.sp_rerun", catalog=catalog, engine="spark", run_id="r1"
    )
    assert again.already_committed and again.snapshot_id == first.snapshot_id
    table = catalog.load_table("test.sp_rerun")
    assert len(table.scan().to_arrow()) == 300
    assert disk_files(table) == snapshot_files(table)
    data = Path(local_path(table.metadata.location)) / "data"
    leftovers = [p for p in data.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert leftovers == []  # no _SUCCESS, no .crc, no _temporary
    assert find_run("test.sp_rerun", "r1", catalog=catalog) is not None


@pytest.mark.spark
def test_a_failed_spark_write_leaves_the_table_and_the_disk_unchanged(
    spark, catalog, disk_files, snapshot_files, tmp_path
) -> None:
    write_iceberg(_ids(spark, 10, start=100_000), "test.sp_fail", catalog=catalog, engine="spark")
    table = catalog.load_table("test.sp_fail")
    before = table.current_snapshot().snapshot_id
    marker = tmp_path / "failed-once"
    flaky_id = F.coalesce(_fail_once_udf(marker)(F.col("id")), F.lit(-1).cast("long"))
    flaky = _ids(spark, 2000).withColumn("id", flaky_id)

    with pytest.raises(CommitError, match="Spark write job failed"):
        write_iceberg(flaky, "test.sp_fail", catalog=catalog, engine="spark", run_id="r1")
    assert marker.exists()
    table.refresh()
    assert table.current_snapshot().snapshot_id == before
    assert disk_files(table) == snapshot_files(table)

    result = write_iceberg(flaky, "test.sp_fail", catalog=catalog, engine="spark", run_id="r1")
    table.refresh()
    assert result.rows == 2000
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == [
        *range(2000),
        *range(100_000, 100_010),
    ]


@pytest.mark.spark
def test_the_write_settings_are_restored_afterwards(spark, catalog) -> None:
    spark.conf.set("spark.sql.parquet.outputTimestampType", "INT96")
    try:
        write_iceberg(_ids(spark, 10), "test.sp_conf", catalog=catalog, engine=WriteEngine.SPARK)
        assert spark.conf.get("spark.sql.parquet.outputTimestampType") == "INT96"
    finally:
        spark.conf.unset("spark.sql.parquet.outputTimestampType")


@pytest.mark.spark
def test_what_the_engine_cannot_write_is_refused_before_the_table_is_created(
    spark, catalog
) -> None:
    nested = spark.createDataFrame(_all_types_rows(5), ALL_TYPES)
    with pytest.raises(SpecError, match="nested columns: arr, m, st"):
        write_iceberg(nested, "test.sp_nested", catalog=catalog, engine="spark")
    with pytest.raises(SpecError, match="partitioned"):
        write_iceberg(
            _ids(spark, 10), "test.sp_part", catalog=catalog, engine="spark", partition_by=["k"]
        )
    with pytest.raises(SpecError, match="engine 'duckdb' is not one of arrow, spark"):
        write_iceberg(_ids(spark, 10), "test.sp_bad", catalog=catalog, engine="duckdb")
    assert catalog.list_tables("test") == []
