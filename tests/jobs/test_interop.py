"""A table written by jobs.writer is read back by an independent Iceberg reader:
DuckDB's own iceberg extension (its metadata, manifest and Parquet readers; no pyiceberg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from jobs.writer import write_iceberg

pytestmark = pytest.mark.spark


def _duckdb() -> Any:
    """A DuckDB connection with the pip-packaged iceberg extension (no network)."""
    import duckdb
    import duckdb_ext

    extension_dir = Path(duckdb_ext.__path__[0]) / "extensions"
    con = duckdb.connect(
        config={"extension_directory": str(extension_dir), "autoinstall_known_extensions": False}
    )
    con.execute("LOAD iceberg")
    return con


def test_duckdb_reads_what_the_writer_wrote(spark, catalog) -> None:
    df = spark.range(0, 20_000, numPartitions=2).select(
        "id",
        (F.col("id") % 7).cast("int").alias("k"),
        (F.col("id") / 3).alias("x"),
        (F.col("id") / 100).cast("decimal(12,2)").alias("amount"),
        F.concat(F.lit("name-"), F.col("id").cast("string")).alias("name"),
        F.expr("timestamp'2024-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id)").alias("ts"),
        F.expr("date'2024-01-01' + cast(id % 30 as int)").alias("day"),
    )
    write_iceberg(df, "test.interop", catalog=catalog, partition_by=["k"])
    write_iceberg(df.where("id < 1000"), "test.interop", catalog=catalog)  # a 2nd snapshot
    table = catalog.load_table("test.interop")
    metadata = table.metadata_location.removeprefix("file://")

    con = _duckdb()
    row = con.execute(
        "select count(*), sum(id), sum(k), sum(x), sum(amount), sum(length(name)),"
        " count(distinct ts), min(day), max(day)"
        f" from iceberg_scan('{metadata}')"
    ).fetchone()
    expected = (
        df.unionByName(df.where("id < 1000"))
        .agg(
            F.count("*"),
            F.sum("id"),
            F.sum("k"),
            F.sum("x"),
            F.sum("amount"),
            F.sum(F.length("name")),
            F.count_distinct("ts"),
            F.min("day"),
            F.max("day"),
        )
        .first()
    )
    assert row[0] == expected[0] == 21_000
    assert row[1:3] == tuple(expected[1:3])
    assert row[3] == pytest.approx(expected[3])
    assert row[4] == expected[4]
    assert row[5:] == tuple(expected[5:])
    per_partition = con.execute(
        f"select k, count(*) from iceberg_scan('{metadata}') group by k order by k"
    ).fetchall()
    assert per_partition == [
        (k, c)
        for k, c in sorted(
            (r["k"], r["count"])
            for r in df.unionByName(df.where("id < 1000")).groupBy("k").count().collect()
        )
    ]


def test_duckdb_reads_what_the_spark_engine_wrote(spark, catalog) -> None:
    df = spark.range(0, 20_000, numPartitions=2).select(
        "id",
        (F.col("id") % 7).cast("short").alias("k"),
        (F.col("id") / 100).cast("decimal(12,2)").alias("amount"),
        F.concat(F.lit("name-"), F.col("id").cast("string")).alias("name"),
        F.expr("timestamp'2024-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id)").alias("ts"),
        F.expr("date'2024-01-01' + cast(id % 30 as int)").alias("day"),
    )
    write_iceberg(df, "test.interop_spark", catalog=catalog, engine="spark")
    write_iceberg(df.where("id < 1000"), "test.interop_spark", catalog=catalog, engine="spark")
    table = catalog.load_table("test.interop_spark")
    metadata = table.metadata_location.removeprefix("file://")

    row = (
        _duckdb()
        .execute(
            "select count(*), sum(id), sum(k), sum(amount), sum(length(name)),"
            " count(distinct ts), min(ts), max(day)"
            f" from iceberg_scan('{metadata}') where id >= 0"
        )
        .fetchone()
    )
    both = df.unionByName(df.where("id < 1000"))
    expected = both.agg(
        F.count("*"),
        F.sum("id"),
        F.sum("k"),
        F.sum("amount"),
        F.sum(F.length("name")),
        F.count_distinct("ts"),
        F.min("ts"),
        F.max("day"),
    ).first()
    assert row[0] == expected[0] == 21_000
    assert row[1:6] == tuple(expected[1:6])
    assert row[6].timestamp() == expected[6].timestamp()  # the same instant (aware vs local)
    assert row[7] == expected[7]
