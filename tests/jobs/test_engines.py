"""jobs.engines: one DataFileWriter interface, one class per WriteEngine, same result type."""

from __future__ import annotations

import pytest
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.schema import Schema
from pyiceberg.types import ListType, LongType, NestedField, StringType

from jobs.data_file_info import DataFileInfo
from jobs.datafiles import TaskPlan
from jobs.engines import ArrowWriter, DataFileWriter, SparkWriter, WriteEngine, data_file_writer
from jobs.errors import SpecError
from jobs.schema_mapping import identity_partition_spec

FLAT = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "v", StringType()),
)
NESTED = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "tags", ListType(3, StringType(), element_required=False)),
)
ZSTD = {"compression": "zstd", "compression_level": 1}
EXPECTED = {WriteEngine.ARROW: ArrowWriter, WriteEngine.SPARK: SparkWriter}


@pytest.mark.parametrize("engine", [*WriteEngine, *(e.value for e in WriteEngine)])
def test_each_engine_value_picks_its_writer(engine: WriteEngine | str) -> None:
    writer = data_file_writer(engine)
    assert isinstance(writer, DataFileWriter)
    assert type(writer) is EXPECTED[WriteEngine(engine)]
    assert writer.engine is WriteEngine(engine)


def test_an_unknown_engine_is_a_spec_error_naming_the_valid_ones() -> None:
    with pytest.raises(SpecError, match="engine 'duckdb' is not one of arrow, spark"):
        data_file_writer("duckdb")


def test_the_arrow_engine_accepts_what_the_spark_engine_refuses() -> None:
    partitioned = identity_partition_spec(FLAT, ["v"])
    arrow, spark = data_file_writer("arrow"), data_file_writer("spark")
    arrow.check_new_table(NESTED, ["id"], table="ns.t")
    arrow.check_table(
        NESTED,
        partitioned,
        location="s3://b/wh/t",
        parquet_options={"compression": "lzo"},
        table="ns.t",
    )
    with pytest.raises(SpecError, match="nested columns: tags"):
        spark.check_new_table(NESTED, [], table="ns.t")
    with pytest.raises(SpecError, match="partitioned"):
        spark.check_new_table(FLAT, ["v"], table="ns.t")
    with pytest.raises(SpecError, match="partition_by names columns that do not exist: k"):
        spark.check_new_table(FLAT, ["k"], table="ns.t")
    with pytest.raises(SpecError, match="not a local"):
        spark.check_table(
            FLAT,
            UNPARTITIONED_PARTITION_SPEC,
            location="s3://b/wh/t",
            parquet_options=ZSTD,
            table="ns.t",
        )
    with pytest.raises(SpecError, match="codec 'lzo'"):
        spark.check_table(
            FLAT,
            UNPARTITIONED_PARTITION_SPEC,
            location="file:///wh/t",
            parquet_options={"compression": "lzo"},
            table="ns.t",
        )
    spark.check_new_table(FLAT, [], table="ns.t")
    spark.check_table(
        FLAT,
        UNPARTITIONED_PARTITION_SPEC,
        location="file:///wh/t",
        parquet_options=ZSTD,
        table="ns.t",
    )


@pytest.mark.spark
@pytest.mark.parametrize("engine", list(WriteEngine))
def test_every_engine_writes_the_same_rows_and_describes_them_alike(
    spark, catalog, engine: WriteEngine
) -> None:
    catalog.create_namespace_if_not_exists("test")
    tbl = catalog.create_table(f"test.engine_{engine.value}", schema=FLAT)
    prefix = f"{tbl.metadata.location}/data/_icefeed_runs/r/w"
    plan = TaskPlan(
        prefix=prefix,
        io_properties=dict(tbl.io.properties),
        schema_json=tbl.schema().model_dump_json(),
        spec_json=tbl.spec().model_dump_json(),
        target_file_bytes=128 * 1024**2,
        parquet_options=ZSTD,
    )
    df = spark.range(0, 500, numPartitions=2).selectExpr("id", "concat('v', id) AS v")
    infos = data_file_writer(engine).write(df, plan)
    assert infos and all(isinstance(i, DataFileInfo) for i in infos)
    assert all(i.path.startswith(prefix) and i.path.endswith(".parquet") for i in infos)
    assert sum(i.record_count for i in infos) == 500
    assert sum(i.value_counts[1] for i in infos) == 500
    assert sum(i.null_value_counts[2] for i in infos) == 0
    assert min(int.from_bytes(i.lower_bounds[1], "little") for i in infos) == 0
    assert max(int.from_bytes(i.upper_bounds[1], "little") for i in infos) == 499
