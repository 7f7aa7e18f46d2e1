"""jobs.clean.transform: every row gets at most one reason, the first rule it fails."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jobs.clean.source import read_source
from jobs.clean.spec import CleanSpec
from jobs.clean.transform import rejected_rows, tag_rows, valid_rows
from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.spark

HEADER = "id,name,score,day,grp"
COLUMNS: dict[str, Any] = {
    "id": {"type": "int", "required": True},
    "name": {"type": "string", "required": True},
    "score": {"type": "int", "min": 0, "max": 100},
    "day": {"type": "date", "min": "2024-01-01"},
    "grp": {"type": "string", "allowed": ["a", "b"]},
}


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def make_spec(path: Path | str, **overrides: Any) -> CleanSpec:
    data: dict[str, Any] = {"source": {"path": str(path)}, "table": "test.t", "columns": COLUMNS}
    data.update(overrides)
    return CleanSpec.from_dict(data)


def tag(spark: SparkSession, spec: CleanSpec) -> DataFrame:
    return tag_rows(read_source(spark, spec.source, spec.columns), spec)


def reasons_by_id(spark: SparkSession, spec: CleanSpec) -> dict[str, str | None]:
    rows = tag(spark, spec).select("__raw_0", "_reason").collect()
    return {row["__raw_0"]: row["_reason"] for row in rows}


def test_each_rule_gives_its_reason(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "in.csv",
        [
            "1,ok,10,2024-01-05,a",
            "2,bad-cast,ten,2024-01-05,a",
            "3,,10,2024-01-05,a",
            "4,too-big,101,2024-01-05,b",
            "5,too-early,10,2023-12-31,b",
            "6,not-allowed,10,2024-01-05,c",
            "7,odd,11,2024-01-05,a",
            "8,dup-loser,20,2024-01-05,a",
            "8,dup-winner,20,2024-01-09,a",
        ],
    )
    spec = make_spec(
        path,
        checks={"even_score": "score % 2 = 0"},
        dedupe={"key": ["id"], "order_by": ["day desc"]},
    )
    assert reasons_by_id(spark, spec) | {"8": None} == {
        "1": None,
        "2": "cast:score",
        "3": "required:name",
        "4": "range:score",
        "5": "range:day",
        "6": "allowed:grp",
        "7": "check:even_score",
        "8": None,
    }
    kept = [r["name"] for r in valid_rows(tag(spark, spec), spec).collect() if r["id"] == 8]
    assert kept == ["dup-winner"]
    dups = tag(spark, spec).filter("_reason = 'duplicate'").select("name").collect()
    assert [r["name"] for r in dups] == ["dup-loser"]


def test_first_failing_rule_in_documented_order_wins(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "in.csv",
        [
            "1,,ten,2024-01-05,z",  # cast, required, allowed -> cast
            "2,,500,2020-01-01,z",  # required, range, allowed -> required
            "3,x,500,2024-01-05,z",  # range, allowed, check -> range
            "4,x,11,2024-01-05,z",  # allowed, check -> allowed
            "x,x,11,2024-01-05,a",  # cast:id before required:id
        ],
    )
    spec = make_spec(path, checks={"even_score": "score % 2 = 0"})
    assert reasons_by_id(spark, spec) == {
        "1": "cast:score",
        "2": "required:name",
        "3": "range:score",
        "4": "allowed:grp",
        "x": "cast:id",
    }


def test_nulls_pass_range_and_allowed_but_not_checks(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", ["1,a,,,", "2,b,4,,"])
    assert reasons_by_id(spark, make_spec(path)) == {"1": None, "2": None}
    checked = make_spec(path, checks={"has_score": "score > 0"})
    assert reasons_by_id(spark, checked) == {"1": "check:has_score", "2": None}


def test_rejects_keep_raw_text_run_id_and_source_file(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", ["1,a, 12x ,2024-01-05,a", "2,b,3,2024-01-05,a"])
    spec = make_spec(path)
    rejects = rejected_rows(tag(spark, spec), spec, "run-42").collect()
    assert len(rejects) == 1
    row = rejects[0].asDict()
    assert row == {
        "id": "1",
        "name": "a",
        "score": " 12x ",
        "day": "2024-01-05",
        "grp": "a",
        "_reason": "cast:score",
        "_run_id": "run-42",
        "_source_file": path.as_uri(),
    }


def test_valid_rows_have_declared_types_renames_and_derived_columns(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "in.csv", ["1,a,4,2024-01-05,a"])
    columns = {**COLUMNS, "name": {"type": "string", "rename": "label"}}
    spec = make_spec(path, columns=columns, derive={"double": "score * 2", "quad": "double * 2"})
    frame = valid_rows(tag(spark, spec), spec)
    types = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    assert types == {
        "id": "int",
        "label": "string",
        "score": "int",
        "day": "date",
        "grp": "string",
        "double": "int",
        "quad": "int",
    }
    assert frame.collect()[0]["quad"] == 16


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"checks": {"broken": "score >>> 1"}}, "checks.broken"),
        ({"checks": {"unknown_col": "nope > 1"}}, "checks.unknown_col"),
        ({"checks": {"not_bool": "score + 1"}}, "checks.not_bool"),
        ({"derive": {"bad": "no_such_fn(score)"}}, "derive.bad"),
    ],
)
def test_bad_expression_is_a_spec_error_naming_it(
    spark: SparkSession, tmp_path: Path, overrides: dict[str, Any], where: str
) -> None:
    path = write_csv(tmp_path / "in.csv", ["1,a,4,2024-01-05,a"])
    spec = make_spec(path, **overrides)
    with pytest.raises(SpecError) as info:
        valid_rows(tag(spark, spec), spec)
    assert str(info.value).startswith(f"{where}: ")


def _dedupe_rows(seed: int) -> list[str]:
    rnd = random.Random(seed)
    rows = []
    for key in range(12):
        for _ in range(rnd.randint(1, 4)):
            # Few distinct days: order_by ties are common; exact duplicates too.
            rows.append(
                f"{key},n{rnd.randint(0, 2)},{rnd.randint(0, 3)},2024-01-0{rnd.randint(1, 3)},a"
            )
    return rows


def test_dedupe_keeps_the_same_rows_whatever_the_order_and_split(
    spark: SparkSession, tmp_path: Path
) -> None:
    rows = _dedupe_rows(7)
    overrides = {"dedupe": {"key": ["id"], "order_by": ["day desc"]}}
    results = []
    for attempt in range(4):
        shuffled = rows[:]
        random.Random(attempt).shuffle(shuffled)
        folder = tmp_path / f"attempt{attempt}"
        parts = attempt + 1  # 1..4 files
        for part in range(parts):
            write_csv(folder / f"part{part}.csv", shuffled[part::parts])
        spec = make_spec(str(folder / "*.csv"), **overrides)
        raw = read_source(spark, spec.source, spec.columns).repartition(attempt + 1)
        kept = valid_rows(tag_rows(raw, spec), spec).collect()
        results.append(sorted(tuple(r) for r in kept))
    assert len(results[0]) == 12
    assert all(result == results[0] for result in results[1:])
    by_id: dict[int, list[tuple[Any, ...]]] = {}
    for line in rows:
        i, name, score, day, _grp = line.split(",")
        by_id.setdefault(int(i), []).append((day, name, score))
    for row in results[0]:
        # The kept row has the latest day of its key (order_by day desc).
        assert str(row[3]) == max(day for day, _, _ in by_id[row[0]])


def test_datetime_format_parses_or_rejects_as_cast(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "in.csv", ["1,05/01/2024 13:45", "2,2024-01-05 13:45"], header="id,at"
    )
    spec = make_spec(
        path,
        columns={
            "id": {"type": "int"},
            "at": {"type": "timestamp", "format": "dd/MM/yyyy HH:mm", "min": "2024-01-01"},
        },
    )
    assert reasons_by_id(spark, spec) == {"1": None, "2": "cast:at"}
    row = valid_rows(tag(spark, spec), spec).collect()[0]
    assert row["at"].isoformat().startswith("2024-01-05T13:45")
