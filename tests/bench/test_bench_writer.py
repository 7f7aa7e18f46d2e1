"""Writer benchmark: the same cached DataFrame written by ``write_iceberg`` and by
Spark's own ``df.write.parquet``, in one run (warm-up once each, then 5
interleaved rounds; each case's best round, and the per-round ratios with their median).

Target: ours ≥ 0.8 × Spark's own Parquet writer (goal 1.0 ×). Also measured:
the codec (zstd level 1 — ours and Iceberg's default — vs snappy, Spark's); the
JVM → Python hand-over alone (a ``mapInArrow`` that writes nothing), which bounds
any ``mapInArrow`` writer from above; and a cleaning-shaped pipeline (not cached:
filter + derived column, then write) where both writers pay for the computation.

``write_iceberg_engine_spark`` is the opt-in ``engine="spark"`` (Spark's own Parquet
writer writes the files, with Iceberg field ids; footers give the DataFile metadata),
reported with its own ratio; the headline ratio stays the default engine's.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from jobs.schema_mapping import spark_to_iceberg
from jobs.writer import write_iceberg
from tests.bench.recorder import record
from tests.bench.rounds import round_ratios

pytestmark = [pytest.mark.bench, pytest.mark.spark]

GROUP = "writer"
ROWS = 5_000_000
REPEATS = 5  # rounds; the same work's CPU cost varies up to 2x between runs on this VM


def _best(runs: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int, list[float]]]:
    """Warm each case up once, then run the cases in turn REPEATS times (interleaved,
    so a noisy neighbour hurts all cases alike); return each case's best seconds,
    bytes written and the seconds of every round."""
    for run in runs.values():
        run()
    best: dict[str, tuple[float, int, list[float]]] = {}
    for _ in range(REPEATS):
        for case, run in runs.items():
            start = time.perf_counter()
            nbytes = run()
            seconds = time.perf_counter() - start
            rounds = best[case][2] if case in best else []
            rounds.append(seconds)
            best[case] = (min(rounds), nbytes, rounds)
    return best


def _round_ratios(
    best: dict[str, tuple[float, int, list[float]]], ours: str, theirs: str
) -> dict[str, Any]:
    """``ours``' speed relative to ``theirs`` in each round, and their median."""
    ratios, median = round_ratios(best[theirs][2], best[ours][2])
    return {"round_ratios": ratios, "median_round_ratio": median}


def _count_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The hand-over alone: receive every batch, write nothing."""
    rows = sum(b.num_rows for b in batches)
    yield pa.RecordBatch.from_pydict({"rows": [rows]})


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def _source(spark):
    return spark.range(0, ROWS, numPartitions=2).select(
        "id",
        (F.col("id") % 1000).cast("int").alias("category"),
        (F.rand(7) * 1000).alias("value"),
        F.concat(F.lit("item-"), (F.col("id") % 50_000).cast("string")).alias("name"),
        F.expr("timestamp'2024-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id)").alias("ts"),
    )


def _spark_parquet(df, tmp_path: Path) -> Callable[[], int]:
    def run() -> int:
        out = tmp_path / f"spark-{uuid.uuid4().hex[:6]}"
        df.write.mode("overwrite").parquet(str(out))
        nbytes = _dir_bytes(out)
        shutil.rmtree(out)
        return nbytes

    return run


def _ours(df, table: str, catalog, rows: int, engine: str = "arrow") -> Callable[[], int]:
    """A timed write that must commit all ``rows`` (a writer that dropped some would
    otherwise just look faster)."""

    def run() -> int:
        result = write_iceberg(df, table, catalog=catalog, engine=engine)
        assert result.rows == rows and not result.already_committed, (table, result.rows)
        return result.bytes

    return run


def test_bench_writer_vs_spark_parquet(spark, catalog, tmp_path: Path) -> None:
    df = _source(spark).cache()
    assert df.count() == ROWS
    parts = df.rdd.getNumPartitions()

    def handover_only() -> int:
        assert sum(r[0] for r in df.mapInArrow(_count_rows, "rows long").collect()) == ROWS
        return 0

    catalog.create_table(
        "test.bench_snappy",
        schema=spark_to_iceberg(df.schema),
        properties={"write.parquet.compression-codec": "snappy"},
    )
    cases = [
        ("spark_df_write_parquet", _spark_parquet(df, tmp_path), {"baseline": True}),
        ("write_iceberg", _ours(df, "test.bench_default", catalog, ROWS), {"codec": "zstd"}),
        (
            "write_iceberg_snappy",
            _ours(df, "test.bench_snappy", catalog, ROWS),
            {"codec": "snappy"},
        ),
        (
            "write_iceberg_engine_spark",
            _ours(df, "test.bench_engine_spark", catalog, ROWS, engine="spark"),
            {"codec": "zstd", "engine": "spark (opt-in)"},
        ),
        (
            "mapinarrow_handover_only",
            handover_only,
            {"note": "upper bound of any mapInArrow writer"},
        ),
    ]
    rates: dict[str, float] = {}
    best = _best({case: run for case, run, _ in cases})
    for case, _, extra in cases:
        seconds, nbytes, _ = best[case]
        rates[case] = ROWS / seconds
        record(
            GROUP,
            case,
            rows=ROWS,
            seconds=seconds,
            nbytes=nbytes or None,
            partitions=parts,
            cached=True,
            **extra,
        )
    ratio = rates["write_iceberg"] / rates["spark_df_write_parquet"]
    rounds = _round_ratios(best, "write_iceberg", "spark_df_write_parquet")
    record(
        GROUP,
        "ratio_write_iceberg_vs_spark",
        ratio=round(ratio, 3),
        target=">= 0.8 (goal 1.0)",
        **rounds,
    )
    print(
        f"\n[bench] writer (cached): write_iceberg / spark parquet = {ratio:.2f}x "
        f"(rounds {rounds['round_ratios']}, median {rounds['median_round_ratio']})"
    )
    engine_ratio = rates["write_iceberg_engine_spark"] / rates["spark_df_write_parquet"]
    record(GROUP, "ratio_engine_spark_vs_spark", ratio=round(engine_ratio, 3), note="opt-in")
    print(f"[bench] writer (cached): engine='spark' / spark parquet = {engine_ratio:.2f}x")
    df.unpersist()


def test_bench_writer_cleaning_pipeline(spark, catalog, tmp_path: Path) -> None:
    df = _source(spark).where("category != 7").withColumn("value2", F.col("value") * 2)
    rows = df.count()
    cases = [
        ("spark_df_write_parquet", _spark_parquet(df, tmp_path), {"baseline": True}),
        ("write_iceberg", _ours(df, "test.bench_pipeline", catalog, rows), {"codec": "zstd"}),
        (
            "write_iceberg_engine_spark",
            _ours(df, "test.bench_pipeline_engine_spark", catalog, rows, engine="spark"),
            {"codec": "zstd", "engine": "spark (opt-in)"},
        ),
    ]
    rates: dict[str, float] = {}
    best = _best({case: run for case, run, _ in cases})
    for case, _, extra in cases:
        seconds, nbytes, _ = best[case]
        rates[case] = rows / seconds
        record(f"{GROUP}_pipeline", case, rows=rows, seconds=seconds, nbytes=nbytes, **extra)
    ratio = rates["write_iceberg"] / rates["spark_df_write_parquet"]
    record(
        f"{GROUP}_pipeline",
        "ratio_write_iceberg_vs_spark",
        ratio=round(ratio, 3),
        **_round_ratios(best, "write_iceberg", "spark_df_write_parquet"),
    )
    print(f"\n[bench] writer (pipeline): write_iceberg / spark parquet = {ratio:.2f}x")
    engine_ratio = rates["write_iceberg_engine_spark"] / rates["spark_df_write_parquet"]
    group = f"{GROUP}_pipeline"
    record(group, "ratio_engine_spark_vs_spark", ratio=round(engine_ratio, 3), note="opt-in")
    print(f"[bench] writer (pipeline): engine='spark' / spark parquet = {engine_ratio:.2f}x")
