"""jobs.writer against the other catalog backends: PostgreSQL SqlCatalog, S3 warehouse."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from jobs.errors import CommitError
from jobs.writer import write_iceberg

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _df(spark, n: int, start: int = 0):
    return spark.range(start, start + n, numPartitions=2).select(
        "id", (F.col("id") % 3).cast("int").alias("k"), (F.col("id") * 0.5).alias("x")
    )


def _data_objects(s3_server, table_path: str) -> set[str]:
    """Objects under the table's data folder, without pyarrow's zero-byte folder markers."""
    return {k for k in s3_server.list_keys() if f"/{table_path}/data/" in k and not k.endswith("/")}


def _check_round_trip(spark, catalog) -> None:
    first = write_iceberg(
        _df(spark, 300), "test.w", catalog=catalog, partition_by=["k"], run_id="a"
    )
    again = write_iceberg(_df(spark, 300), "test.w", catalog=catalog, run_id="a")
    write_iceberg(_df(spark, 100, start=300), "test.w", catalog=catalog, run_id="b")
    table = catalog.load_table("test.w")
    ids = sorted(table.scan().to_arrow().column("id").to_pylist())
    assert ids == list(range(400))
    assert again.already_committed and again.snapshot_id == first.snapshot_id
    assert len(table.snapshots()) == 2


def test_postgres_catalog_round_trip(spark, postgres_catalog) -> None:
    _check_round_trip(spark, postgres_catalog)


def test_s3_warehouse_round_trip(spark, s3_catalog, s3_server) -> None:
    _check_round_trip(spark, s3_catalog)
    table = s3_catalog.load_table("test.w")
    assert table.metadata.location.startswith("s3://")
    committed = {t.file.file_path for t in table.scan().plan_files()}
    data_keys = _data_objects(s3_server, "test/w")
    assert {p.split(f"s3://{s3_server.bucket}/", 1)[1] for p in committed} == data_keys


def test_s3_failed_write_leaves_no_objects(spark, s3_catalog, s3_server, tmp_path) -> None:
    write_iceberg(_df(spark, 10), "test.f", catalog=s3_catalog)
    table = s3_catalog.load_table("test.f")
    before = table.current_snapshot().snapshot_id
    data_before = _data_objects(s3_server, "test/f")

    def boom(i):
        if i == 150:
            raise RuntimeError("injected")
        return i

    flaky = _df(spark, 200).withColumn(
        "id", F.coalesce(F.udf(boom, "long")(F.col("id")), F.lit(-1).cast("long"))
    )
    with pytest.raises(CommitError):
        write_iceberg(flaky, "test.f", catalog=s3_catalog)
    table.refresh()
    assert table.current_snapshot().snapshot_id == before
    assert _data_objects(s3_server, "test/f") == data_before
