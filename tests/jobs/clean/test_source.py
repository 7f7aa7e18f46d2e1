"""jobs.clean.source: one read, strings only; a bad source is a SpecError before any write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jobs.clean.source import check_source_exists, read_source
from jobs.clean.spec import CleanSpec
from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COLUMNS = {"id": {"type": "int"}, "name": {"type": "string"}}


def make_spec(path: Path | str, **source: Any) -> CleanSpec:
    return CleanSpec.from_dict(
        {"source": {"path": str(path), **source}, "table": "test.t", "columns": COLUMNS}
    )


def test_missing_path_and_unmatched_glob_fail_before_spark(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        check_source_exists(make_spec(tmp_path / "absent.csv").source)
    with pytest.raises(SpecError, match="no file matches"):
        check_source_exists(make_spec(tmp_path / "*.csv").source)
    check_source_exists(make_spec("s3://bucket/raw/*.csv").source)  # checked by Spark later


@pytest.mark.spark
def test_header_lacking_a_declared_column_is_a_spec_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,label\n1,a\n")
    spec = make_spec(path)
    with pytest.raises(SpecError) as info:
        read_source(spark, spec.source, spec.columns)
    assert "lacks declared column(s) name" in str(info.value)
    assert "it has: id, label" in str(info.value)


@pytest.mark.spark
def test_empty_file_is_a_spec_error(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("")
    spec = make_spec(path)
    with pytest.raises(SpecError, match="empty"):
        read_source(spark, spec.source, spec.columns)


@pytest.mark.spark
def test_csv_is_read_as_strings_with_the_source_file(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("name;id;extra\nx;007;e\nNA;1;e\n")
    spec = make_spec(path, options={"sep": ";", "nullValue": "NA", "inferschema": True})
    frame = read_source(spark, spec.source, spec.columns)
    assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == [
        ("id", "string"),
        ("name", "string"),
        ("_source_file", "string"),
    ]
    rows = sorted(tuple(r) for r in frame.collect())
    assert rows == [("007", "x", path.as_uri()), ("1", None, path.as_uri())]


@pytest.mark.spark
def test_json_numbers_are_kept_as_their_text(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text("\n".join(json.dumps(r) for r in [{"id": 7, "name": "a"}, {"id": "x"}]) + "\n")
    spec = make_spec(path, format="json")
    rows = sorted(tuple(r)[:2] for r in read_source(spark, spec.source, spec.columns).collect())
    assert rows == [("7", "a"), ("x", None)]


@pytest.mark.spark
def test_parquet_columns_are_cast_to_strings(spark: SparkSession, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", None], "other": [1.5, 2.5]}), path)
    spec = make_spec(path, format="parquet")
    frame = read_source(spark, spec.source, spec.columns)
    assert sorted(tuple(r)[:2] for r in frame.collect()) == [("1", "a"), ("2", None)]
    missing = CleanSpec.from_dict(
        {
            "source": {"path": str(path), "format": "parquet"},
            "table": "test.t",
            "columns": {"id": {"type": "int"}, "absent": {"type": "int"}},
        }
    )
    with pytest.raises(SpecError, match="lacks declared column"):
        read_source(spark, missing.source, missing.columns)
