"""jobs.writer: Spark → Iceberg through our Arrow writer, on the session's local Spark
and a fresh embedded catalog per test."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

import jobs.engines as engines_module
import jobs.writer as writer_module
from jobs.data_file_info import DataFileInfo
from jobs.datafiles import TaskPlan
from jobs.errors import CommitError, SpecError
from jobs.spark import ARROW_BYTE_BOUND_OFF, ARROW_MAX_BYTES_CONF
from jobs.staging import write_prefix
from jobs.writer import (
    RUN_ID_PROPERTY,
    StagedWrite,
    WriteMode,
    abort_staged,
    commit_staged,
    find_run,
    stage_write,
    write_iceberg,
)
from tests.jobs import retried_task

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]

ALL_TYPES = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("b", T.BooleanType()),
        T.StructField("i8", T.ByteType()),
        T.StructField("i16", T.ShortType()),
        T.StructField("i32", T.IntegerType()),
        T.StructField("f32", T.FloatType()),
        T.StructField("f64", T.DoubleType()),
        T.StructField("dec", T.DecimalType(12, 3)),
        T.StructField("dec38", T.DecimalType(38, 0)),
        T.StructField("s", T.StringType()),
        T.StructField("bin", T.BinaryType()),
        T.StructField("d", T.DateType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("ntz", T.TimestampNTZType()),
        T.StructField("arr", T.ArrayType(T.StringType())),
        T.StructField("m", T.MapType(T.StringType(), T.LongType())),
        T.StructField(
            "st",
            T.StructType([T.StructField("x", T.IntegerType()), T.StructField("y", T.StringType())]),
        ),
    ]
)


def _all_types_rows(n: int) -> list[tuple[Any, ...]]:
    utc = dt.timezone.utc
    rows = []
    for i in range(n):
        if i % 5 == 4:  # a row of nulls (but the id)
            rows.append((i, *([None] * (len(ALL_TYPES.fields) - 1))))
            continue
        rows.append(
            (
                i,
                i % 2 == 0,
                i % 100 - 50,
                i * 3 - 1000,
                i * 1000,
                i / 4,
                i / 3,
                Decimal(i) / 1000,
                Decimal(10**30 + i),
                f"s{i}é",
                bytes([i % 256, 0, 255]),
                dt.date(2024, 1, 1) + dt.timedelta(days=i),
                dt.datetime(2024, 1, 1, 12, tzinfo=utc) + dt.timedelta(seconds=i, microseconds=i),
                dt.datetime(2024, 1, 1, 12) + dt.timedelta(minutes=i),
                [f"a{i}", None, "b"],
                {"k": i, "n": None},
                (i, f"y{i}"),
            )
        )
    return rows


def _ids(spark: SparkSession, n: int, start: int = 0, parts: int = 2) -> DataFrame:
    return spark.range(start, start + n, numPartitions=parts).select(
        "id",
        (F.col("id") % 3).cast("int").alias("k"),
        F.concat(F.lit("v"), F.col("id").cast("string")).alias("v"),
    )


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_every_supported_type_round_trips(spark, catalog) -> None:
    df = spark.createDataFrame(_all_types_rows(50), ALL_TYPES).repartition(2)
    result = write_iceberg(df, "test.types", catalog=catalog)
    assert result.rows == 50 and not result.already_committed

    table = catalog.load_table("test.types")
    assert str(table.schema().find_field("ts").field_type) == "timestamptz"
    assert str(table.schema().find_field("ntz").field_type) == "timestamp"
    assert str(table.schema().find_field("i8").field_type) == "int"
    assert table.schema().find_field("id").required
    back = _sorted(table.scan().to_arrow())
    expected = _sorted(df.toArrow())
    assert back == expected


def test_column_statistics_are_recorded(spark, catalog) -> None:
    write_iceberg(_ids(spark, 1000), "test.stats", catalog=catalog)
    table = catalog.load_table("test.stats")
    id_field = table.schema().find_field("id").field_id
    files = [t.file for t in table.scan().plan_files()]
    lows = [int.from_bytes(f.lower_bounds[id_field], "little", signed=True) for f in files]
    highs = [int.from_bytes(f.upper_bounds[id_field], "little", signed=True) for f in files]
    assert min(lows) == 0 and max(highs) == 999
    meta = pq.ParquetFile(files[0].file_path.removeprefix("file://")).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"  # the writer's default codec
    assert sum(f.record_count for f in files) == 1000
    # the scan planner prunes on those statistics
    assert len(table.scan(row_filter="id >= 990").to_arrow()) == 10


def test_partitioned_write_follows_the_partition_spec(spark, catalog) -> None:
    result = write_iceberg(_ids(spark, 900), "test.parts", catalog=catalog, partition_by=["k"])
    table = catalog.load_table("test.parts")
    assert [f.name for f in table.spec().fields] == ["k"]
    files = [t.file for t in table.scan().plan_files()]
    # one file per task and partition: 2 tasks x 3 partitions
    assert result.data_files == len(files) == 6
    for f in files:
        rows = table.scan(row_filter=f"k == {f.partition[0]}").to_arrow()
        assert set(rows.column("k").to_pylist()) == {f.partition[0]}
        assert f"k={f.partition[0]}" in f.file_path
    assert table.scan().to_arrow().num_rows == 900


def test_small_target_size_rolls_files(spark, catalog) -> None:
    df = _ids(spark, 200_000, parts=1)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20000")
    try:
        result = write_iceberg(df, "test.roll", catalog=catalog, target_file_bytes=50_000)
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "200000")
    assert result.data_files > 2
    table = catalog.load_table("test.roll")
    assert table.scan().to_arrow().num_rows == 200_000
    sizes = sorted(t.file.file_size_in_bytes for t in table.scan().plan_files())
    assert all(size >= 50_000 for size in sizes[1:])  # one task: only its last file is short


def _byte_bound_hints(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if ARROW_MAX_BYTES_CONF in r.getMessage()]


def test_a_session_with_a_byte_bound_on_arrow_batches_gets_one_hint(
    spark, catalog, caplog, monkeypatch
) -> None:
    df = _ids(spark, 1_000)
    monkeypatch.setattr(engines_module, "_hinted", set())
    spark.conf.set(ARROW_MAX_BYTES_CONF, "64m")  # Spark's default
    try:
        with caplog.at_level(logging.INFO, logger="jobs.engines"):
            write_iceberg(df, "test.hint", catalog=catalog)
            write_iceberg(df, "test.hint", catalog=catalog)
    finally:
        spark.conf.set(ARROW_MAX_BYTES_CONF, str(ARROW_BYTE_BOUND_OFF))
    hints = _byte_bound_hints(caplog)
    assert len(hints) == 1  # once per session
    assert str(ARROW_BYTE_BOUND_OFF) in hints[0].getMessage()

    caplog.clear()
    monkeypatch.setattr(engines_module, "_hinted", set())
    with caplog.at_level(logging.INFO, logger="jobs.engines"):
        write_iceberg(df, "test.hint", catalog=catalog)  # icefeed's setting: no hint
    assert _byte_bound_hints(caplog) == []
    assert catalog.load_table("test.hint").scan().to_arrow().num_rows == 3_000


def test_append_then_overwrite(spark, catalog) -> None:
    write_iceberg(_ids(spark, 100), "test.modes", catalog=catalog)
    write_iceberg(_ids(spark, 50, start=100), "test.modes", catalog=catalog, mode="append")
    table = catalog.load_table("test.modes")
    assert table.scan().to_arrow().num_rows == 150
    result = write_iceberg(
        _ids(spark, 10, start=1000), "test.modes", catalog=catalog, mode=WriteMode.OVERWRITE
    )
    table.refresh()
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(1000, 1010))
    assert result.rows == 10
    assert table.current_snapshot().summary.operation.value == "overwrite"


def test_an_empty_dataframe_commits_an_empty_snapshot_with_its_run_id(spark, catalog) -> None:
    write_iceberg(_ids(spark, 5), "test.empty", catalog=catalog)
    result = write_iceberg(_ids(spark, 0), "test.empty", catalog=catalog, run_id="e")
    assert (result.rows, result.data_files) == (0, 0) and result.snapshot_id is not None
    assert find_run("test.empty", "e", catalog=catalog) is not None
    assert catalog.load_table("test.empty").scan().to_arrow().num_rows == 5
    write_iceberg(_ids(spark, 0), "test.empty", catalog=catalog, mode="overwrite")
    assert catalog.load_table("test.empty").scan().to_arrow().num_rows == 0


def test_one_snapshot_per_call_tagged_with_the_run_id(spark, catalog) -> None:
    result = write_iceberg(_ids(spark, 100, parts=4), "test.snap", catalog=catalog, run_id="run-1")
    table = catalog.load_table("test.snap")
    assert len(table.snapshots()) == 1
    snapshot = table.current_snapshot()
    assert snapshot.snapshot_id == result.snapshot_id
    assert snapshot.summary[RUN_ID_PROPERTY] == "run-1"
    assert find_run("test.snap", "run-1", catalog=catalog) == result.__class__(
        **{**result.__dict__, "already_committed": True}
    )
    assert find_run("test.snap", "run-2", catalog=catalog) is None
    assert find_run("test.nope", "run-1", catalog=catalog) is None


def test_rerun_with_a_committed_run_id_writes_nothing(spark, catalog, disk_files) -> None:
    first = write_iceberg(_ids(spark, 100), "test.idem", catalog=catalog, run_id="daily-1")
    table = catalog.load_table("test.idem")
    files_before = disk_files(table)
    again = write_iceberg(_ids(spark, 100), "test.idem", catalog=catalog, run_id="daily-1")
    table.refresh()
    assert again.already_committed
    assert again.snapshot_id == first.snapshot_id and again.rows == first.rows == 100
    assert len(table.snapshots()) == 1
    assert table.scan().to_arrow().num_rows == 100
    assert disk_files(table) == files_before


def test_commit_staged_twice_commits_once(spark, catalog) -> None:
    staged = stage_write(_ids(spark, 10), "test.twice", catalog=catalog, run_id="r")
    first = commit_staged(staged, catalog=catalog)
    second = commit_staged(staged, catalog=catalog)
    assert second.already_committed and second.snapshot_id == first.snapshot_id
    table = catalog.load_table("test.twice")
    assert table.scan().to_arrow().num_rows == 10
    abort_staged(staged, catalog=catalog)  # aborting a committed write must not break the table
    assert table.scan().to_arrow().num_rows == 10


def test_second_staging_of_the_same_run_id_is_dropped_at_commit(
    spark, catalog, disk_files, snapshot_files
) -> None:
    a = stage_write(_ids(spark, 10), "test.race", catalog=catalog, run_id="same")
    b = stage_write(_ids(spark, 10), "test.race", catalog=catalog, run_id="same")
    commit_staged(a, catalog=catalog)
    late = commit_staged(b, catalog=catalog)
    table = catalog.load_table("test.race")
    assert late.already_committed
    assert table.scan().to_arrow().num_rows == 10
    assert disk_files(table) == snapshot_files(table)  # b's files were deleted


def test_abort_deletes_staged_files(spark, catalog, disk_files) -> None:
    staged = stage_write(_ids(spark, 10), "test.abort", catalog=catalog)
    table = catalog.load_table("test.abort")
    assert len(disk_files(table)) == staged_files(staged)
    abort_staged(staged, catalog=catalog)
    assert disk_files(table) == set()
    assert table.current_snapshot() is None


def staged_files(staged: StagedWrite) -> int:
    return len(staged.data_files)


def _fail_once_udf(marker: Path):
    def value(i):  # no type hints: pyspark would try to infer a pandas UDF from them
        if i == 1500 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure on its first attempt")
        return i

    return F.udf(value, T.LongType())


def test_a_failed_job_leaves_the_table_and_the_disk_unchanged(
    spark, catalog, disk_files, snapshot_files, tmp_path
) -> None:
    write_iceberg(_ids(spark, 10, start=100_000), "test.fail", catalog=catalog)
    table = catalog.load_table("test.fail")
    snapshot_before = table.current_snapshot().snapshot_id
    marker = tmp_path / "failed-once"
    # coalesce keeps ``id`` non-nullable, as the table requires
    flaky_id = F.coalesce(_fail_once_udf(marker)(F.col("id")), F.lit(-1).cast("long"))
    flaky = _ids(spark, 2000).withColumn("id", flaky_id)

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
    try:
        with pytest.raises(CommitError, match="Spark write job failed"):
            # small files: both tasks have closed files on disk when one of them dies
            write_iceberg(flaky, "test.fail", catalog=catalog, run_id="r1", target_file_bytes=500)
        assert marker.exists()
        table.refresh()
        assert table.current_snapshot().snapshot_id == snapshot_before
        assert disk_files(table) == snapshot_files(table)  # no orphans

        # the re-run (the failure does not repeat) commits every row exactly once
        result = write_iceberg(flaky, "test.fail", catalog=catalog, run_id="r1")
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "200000")
    table.refresh()
    ids = table.scan().to_arrow().column("id").to_pylist()
    assert result.rows == 2000 and not result.already_committed
    assert sorted(ids) == [*range(2000), *range(100_000, 100_010)]
    assert len(table.snapshots()) == 2
    assert disk_files(table) == snapshot_files(table)


@pytest.mark.slow
def test_a_retried_task_is_committed_once_and_its_dead_attempts_files_deleted(
    catalog, icefeed_home, disk_files, snapshot_files, tmp_path
) -> None:
    """A real Spark task retry (own ``local[2,2]`` session, see tests/jobs/retried_task.py):
    the first attempt of one task closes a data file and its Python worker dies before
    reporting; Spark runs the task again; write_iceberg commits each row once and the
    driver's cleanup deletes the dead attempt's file."""
    journal = tmp_path / "journal"
    journal.mkdir()
    env = {**os.environ, "ICEFEED_HOME": str(icefeed_home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.jobs.retried_task", str(journal)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    # the task really failed once and was retried: its attempt 0 died after closing a file
    died = json.loads((journal / "died.json").read_text())
    assert (died["partition"], died["attempt"]) == (retried_task.DYING_PARTITION, 0)
    assert len(died["files"]) == 1
    assert (journal / f"attempt-{retried_task.DYING_PARTITION}-1").exists()
    table = catalog.load_table(retried_task.TABLE)
    snapshot_id = table.current_snapshot().snapshot_id
    assert result == {"rows": retried_task.ROWS, "snapshot_id": snapshot_id}
    assert len(table.snapshots()) == 1
    ids = table.scan().to_arrow().column("id").to_pylist()
    assert sorted(ids) == list(range(retried_task.ROWS))  # every row once
    assert len(snapshot_files(table)) == 4  # one file per Arrow batch of the two tasks
    assert not Path(died["files"][0]).exists()  # the dead attempt's file is deleted
    assert disk_files(table) == snapshot_files(table)


def test_the_write_job_keeps_one_copy_of_a_file_reported_twice_and_deletes_unreported_ones(
    spark, catalog, disk_files, snapshot_files
) -> None:
    """``_run_write_job`` given real Spark write tasks' outputs shaped as a speculative or
    retried job could leave them: one run's files on disk but never reported, the
    other's report arrives twice; only the reported files are kept, each once."""
    write_iceberg(_ids(spark, 1), "test.retry", catalog=catalog)
    table = catalog.load_table("test.retry")
    plan = TaskPlan(
        prefix=write_prefix(table.metadata.location, "r", "w"),
        io_properties=dict(table.io.properties),
        schema_json=table.schema().model_dump_json(),
        spec_json=table.spec().model_dump_json(),
        target_file_bytes=1 << 30,
        parquet_options={"compression": "snappy"},
    )
    df = _ids(spark, 100, start=10, parts=2)
    lost: list[DataFileInfo] = []

    def retried_job() -> list[DataFileInfo]:
        lost.extend(engines_module.ArrowWriter().write(df, plan))  # attempt 1: report lost
        reported = engines_module.ArrowWriter().write(df, plan)  # attempt 2
        return reported + reported  # ... reported twice

    infos = writer_module._run_write_job(df, plan, "test: a retried task", retried_job)

    assert len(lost) == len(infos) == 2
    assert not {i.path for i in lost} & {i.path for i in infos}
    assert len({i.path for i in infos}) == len(infos)  # each reported file once
    staged = StagedWrite(
        table="test.retry",
        run_id="r",
        mode=WriteMode.APPEND,
        data_files=tuple(infos),
        rows=sum(i.record_count for i in infos),
        bytes=sum(i.size for i in infos),
        prefix=plan.prefix,
    )
    commit_staged(staged, catalog=catalog)
    table.refresh()
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == [0, *range(10, 110)]
    assert disk_files(table) == snapshot_files(table)  # the lost attempt's files are deleted


def test_schema_mismatch_is_refused_naming_the_columns(spark, catalog) -> None:
    write_iceberg(_ids(spark, 10), "test.schema", catalog=catalog)
    table = catalog.load_table("test.schema")
    before = table.current_snapshot().snapshot_id
    wrong = _ids(spark, 10).select(
        "id", F.col("k").cast("string").alias("k"), F.lit(1).alias("surplus")
    )
    with pytest.raises(SpecError) as err:
        write_iceberg(wrong, "test.schema", catalog=catalog)
    message = str(err.value)
    assert "v: missing" in message
    assert "surplus: not a column" in message
    assert "k: string in the DataFrame, int in the table" in message
    table.refresh()
    assert table.current_snapshot().snapshot_id == before


def test_nullable_column_into_a_required_one_is_refused(spark, catalog) -> None:
    write_iceberg(_ids(spark, 10), "test.req", catalog=catalog)  # range ids are not null
    assert catalog.load_table("test.req").schema().find_field("id").required
    nullable = _ids(spark, 10).withColumn("id", F.when(F.col("id") > 5, F.col("id")))
    with pytest.raises(SpecError, match="id: nullable in the DataFrame but required"):
        write_iceberg(nullable, "test.req", catalog=catalog)


def test_column_order_may_differ_from_the_table(spark, catalog) -> None:
    write_iceberg(_ids(spark, 10), "test.order", catalog=catalog)
    write_iceberg(_ids(spark, 10, start=10).select("v", "k", "id"), "test.order", catalog=catalog)
    rows = _sorted(catalog.load_table("test.order").scan().to_arrow())
    assert rows[15] == {"id": 15, "k": 0, "v": "v15"}


def test_unsupported_type_is_refused_before_the_table_is_created(spark, catalog) -> None:
    df = _ids(spark, 3).withColumn("span", F.expr("make_dt_interval(1, 0, 0, 0)"))
    with pytest.raises(SpecError, match="span"):
        write_iceberg(df, "test.interval", catalog=catalog)
    assert not catalog.table_exists("test.interval")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": "no_namespace"}, "namespace.name"),
        ({"mode": "upsert"}, "append, overwrite"),
        ({"run_id": "../escape"}, "run id"),
        ({"partition_by": ["nope"]}, "nope"),
        ({"target_file_bytes": 0}, "positive"),
    ],
)
def test_bad_arguments_are_spec_errors(spark, catalog, kwargs, match) -> None:
    args: dict[str, Any] = {"table": "test.bad", **kwargs}
    table = args.pop("table")
    with pytest.raises(SpecError, match=match):
        write_iceberg(_ids(spark, 3), table, catalog=catalog, **args)


def test_partition_by_must_match_an_existing_tables_spec(spark, catalog) -> None:
    write_iceberg(_ids(spark, 3), "test.spec", catalog=catalog, partition_by=["k"])
    with pytest.raises(SpecError, match="partitioned by"):
        write_iceberg(_ids(spark, 3), "test.spec", catalog=catalog, partition_by=["v"])
    write_iceberg(_ids(spark, 3), "test.spec", catalog=catalog)  # the table's own spec


def test_writer_uses_the_default_catalog_when_none_is_given(spark, catalog) -> None:
    result = write_iceberg(_ids(spark, 5), "test.default")
    assert result.rows == 5
    assert catalog.load_table("test.default").scan().to_arrow().num_rows == 5


def test_timestamps_keep_the_instant_in_any_session_time_zone(spark, catalog) -> None:
    utc = dt.timezone.utc
    instant = dt.datetime(2024, 3, 10, 6, 30, tzinfo=utc)
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        df = spark.createDataFrame(
            [(1, instant, dt.datetime(2024, 3, 10, 6, 30))],
            "id long not null, ts timestamp, wall timestamp_ntz",
        )
        write_iceberg(df, "test.tz", catalog=catalog)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    row = catalog.load_table("test.tz").scan().to_arrow().to_pylist()[0]
    assert row["ts"] == instant
    assert row["wall"] == dt.datetime(2024, 3, 10, 6, 30)


def test_a_catalog_failure_at_commit_is_a_commit_error_and_abort_cleans_up(
    spark, catalog, monkeypatch, disk_files, snapshot_files
) -> None:
    write_iceberg(_ids(spark, 3), "test.cat_fail", catalog=catalog)
    table = catalog.load_table("test.cat_fail")
    before = table.current_snapshot().snapshot_id

    def broken(*args, **kwargs):  # the catalog's database went away at the commit
        raise OSError("catalog database unreachable")

    monkeypatch.setattr(catalog, "commit_table", broken)
    with pytest.raises(CommitError, match="OSError: catalog database unreachable"):
        write_iceberg(_ids(spark, 3, start=10), "test.cat_fail", catalog=catalog)
    table.refresh()
    assert table.current_snapshot().snapshot_id == before
    assert disk_files(table) == snapshot_files(table)
