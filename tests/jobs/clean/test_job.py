"""jobs.clean.job: every row read lands in exactly one table, once, whatever happens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import jobs.writer as writer_module
from jobs.clean import CleanReport, CleanSpec, run
from jobs.errors import CommitError, SpecError
from jobs.orphans import GRACE_PROPERTY

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

EXPECTED_REASONS = {
    "cast:score": 1,
    "required:name": 1,
    "range:score": 1,
    "allowed:grp": 1,
    "check:even_score": 1,
    "duplicate": 1,
}


def spec_dict(source: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": {"path": str(source)},
        "table": "test.events",
        "columns": {
            "id": {"type": "int", "required": True},
            "name": {"type": "string", "required": True},
            "score": {"type": "int", "min": 0, "max": 100},
            "day": {"type": "date"},
            "grp": {"type": "string", "allowed": ["a", "b"]},
        },
        "checks": {"even_score": "score % 2 = 0"},
        "dedupe": {"key": ["id"], "order_by": ["day desc"]},
        "derive": {"double_score": "score * 2"},
        "partition_by": ["grp"],
    }
    data.update(overrides)
    return data


def table_rows(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    return catalog.load_table(name).scan().to_arrow().to_pylist()


def test_run_reconciles_and_fills_both_tables(
    spark: SparkSession, catalog: Catalog, source: Path
) -> None:
    report = run(CleanSpec.from_dict(spec_dict(source)), spark=spark, catalog=catalog)
    assert (report.rows_in, report.rows_written, report.rows_rejected) == (9, 3, 6)
    assert report.rejects_by_reason == EXPECTED_REASONS
    assert report.rows_in == report.rows_written + sum(report.rejects_by_reason.values())
    assert report.table == "test.events" and report.rejects_table == "test.events__rejects"
    assert not report.already_committed and report.seconds > 0

    clean = sorted(table_rows(catalog, "test.events"), key=lambda r: r["id"])
    assert [(r["id"], r["name"], r["double_score"]) for r in clean] == [
        (1, "ok", 20),
        (8, "dup-winner", 40),
        (9, "ok2", 60),
    ]
    rejects = table_rows(catalog, "test.events__rejects")
    assert sorted(r["_reason"] for r in rejects) == sorted(EXPECTED_REASONS)
    assert {r["_run_id"] for r in rejects} == {report.run_id}
    assert {r["_source_file"] for r in rejects} == {source.as_uri()}
    assert next(r for r in rejects if r["_reason"] == "cast:score")["score"] == "ten"

    for name, snapshot_id in (
        ("test.events", report.snapshot_id),
        ("test.events__rejects", report.rejects_snapshot_id),
    ):
        snapshot = catalog.load_table(name).current_snapshot()
        assert snapshot is not None and snapshot.snapshot_id == snapshot_id
        assert snapshot.summary is not None
        assert snapshot.summary["icefeed.run-id"] == report.run_id
        assert snapshot.summary["icefeed.clean.rows-in"] == "9"
    assert catalog.load_table("test.events").spec().fields[0].name == "grp"


def test_rerun_with_the_same_run_id_writes_nothing(
    spark: SparkSession, catalog: Catalog, source: Path
) -> None:
    spec = CleanSpec.from_dict(spec_dict(source))
    first = run(spec, spark=spark, catalog=catalog, run_id="nightly-1")
    again = run(spec, spark=spark, catalog=catalog, run_id="nightly-1")
    assert again.already_committed
    assert (again.rows_in, again.rows_written, again.rows_rejected) == (9, 3, 6)
    assert again.rejects_by_reason == first.rejects_by_reason
    assert (again.snapshot_id, again.rejects_snapshot_id) == (
        first.snapshot_id,
        first.rejects_snapshot_id,
    )
    assert len(table_rows(catalog, "test.events")) == 3
    assert len(table_rows(catalog, "test.events__rejects")) == 6
    assert len(catalog.load_table("test.events").snapshots()) == 1


class Crash(BaseException):
    """The process dies here: no handler below ``run`` cleans anything up."""


def test_repair_after_a_crash_between_the_two_commits(
    spark: SparkSession,
    catalog: Catalog,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
    disk_files: Any,
    snapshot_files: Any,
) -> None:
    """The run dies at the seam between its two commits (after the clean table's
    commit returned, before the rejects table's starts): the re-run with the same run
    id commits the rejects once, leaves the clean table alone, and the writer's orphan
    sweep deletes the files the dead run staged for the rejects table."""
    spec = CleanSpec.from_dict(spec_dict(source))
    real_commit_staged = writer_module.commit_staged
    commits: list[str] = []

    def dies_before_the_rejects_commit(staged: Any, **kwargs: Any) -> Any:
        commits.append(staged.table)
        if staged.table == spec.rejects_table:
            raise Crash
        return real_commit_staged(staged, **kwargs)

    monkeypatch.setattr(writer_module, "commit_staged", dies_before_the_rejects_commit)
    with pytest.raises(Crash):
        run(spec, spark=spark, catalog=catalog, run_id="crashy")
    monkeypatch.setattr(writer_module, "commit_staged", real_commit_staged)
    assert commits == [spec.table, spec.rejects_table]  # the seam, in that order

    # the state the crash left: the clean table committed; the rejects table exists
    # with the second commit's files staged on disk and no snapshot
    clean = catalog.load_table("test.events")
    first_snapshot = clean.current_snapshot().snapshot_id
    rejects = catalog.load_table("test.events__rejects")
    assert rejects.current_snapshot() is None
    crashed_files = disk_files(rejects)
    assert crashed_files
    # a grace period of 0 s: the repair's own sweep (at the start of its staging)
    # may take the dead run's files at once, as it would after the default 3 days
    with rejects.transaction() as tx:
        tx.set_properties({GRACE_PROPERTY: "0"})

    repaired = run(spec, spark=spark, catalog=catalog, run_id="crashy")
    assert not repaired.already_committed
    assert repaired.snapshot_id == first_snapshot  # clean table not written twice
    assert len(table_rows(catalog, "test.events")) == 3
    assert len(table_rows(catalog, "test.events__rejects")) == 6
    assert len(catalog.load_table("test.events").snapshots()) == 1
    assert len(catalog.load_table("test.events__rejects").snapshots()) == 1
    assert disk_files(clean) == snapshot_files(clean)
    committed = snapshot_files(rejects)
    assert committed and committed.isdisjoint(crashed_files)  # the repair wrote its own
    assert disk_files(rejects) == committed  # and the dead run's staged files are gone


def test_overwrite_replaces_both_tables(
    spark: SparkSession, catalog: Catalog, source: Path
) -> None:
    spec = CleanSpec.from_dict(spec_dict(source, mode="overwrite"))
    run(spec, spark=spark, catalog=catalog)
    report = run(spec, spark=spark, catalog=catalog)
    assert len(table_rows(catalog, "test.events")) == report.rows_written == 3
    assert len(table_rows(catalog, "test.events__rejects")) == report.rows_rejected == 6


def test_a_source_with_no_rejects_still_reconciles(
    spark: SparkSession, catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "clean.csv"
    path.write_text("id,name,score,day,grp\n1,a,2,2024-01-01,a\n2,b,4,2024-01-02,b\n")
    report = run(CleanSpec.from_dict(spec_dict(path)), spark=spark, catalog=catalog)
    assert (report.rows_in, report.rows_written, report.rows_rejected) == (2, 2, 0)
    assert report.rejects_by_reason == {}
    assert len(table_rows(catalog, "test.events")) == 2


def write_spec(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def catalog_state(catalog: Catalog) -> dict[str, list[str]]:
    return {
        ".".join(ns): sorted(".".join(t) for t in catalog.list_tables(ns))
        for ns in catalog.list_namespaces()
    }


def _bad(case: str, tmp_path: Path, source: Path) -> dict[str, Any]:
    if case == "unknown key":
        return spec_dict(source, colums={})
    if case == "wrong type name":
        return spec_dict(source, columns={"id": {"type": "innt"}})
    if case == "missing source":
        return spec_dict(tmp_path / "nope" / "*.csv")
    if case == "header lacks a column":
        path = tmp_path / "short.csv"
        path.write_text("id,name,score,day\n1,a,2,2024-01-01\n")
        return spec_dict(path)
    if case == "empty file":
        path = tmp_path / "empty.csv"
        path.write_text("")
        return spec_dict(path)
    if case == "header only":
        path = tmp_path / "header.csv"
        path.write_text("id,name,score,day,grp\n")
        return spec_dict(path)
    if case == "table not namespace.name":
        return spec_dict(source, table="events")
    if case == "bad check":
        return spec_dict(source, checks={"broken": "score >>> 2"})
    if case == "bad derive":
        return spec_dict(source, derive={"ratio": "score / missing_column"})
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown key", "colums: unknown key"),
        ("wrong type name", "columns.id.type: 'innt' is not one of"),
        ("missing source", "no file matches"),
        ("header lacks a column", "lacks declared column(s) grp"),
        ("empty file", "is empty"),
        ("header only", "is empty"),
        ("table not namespace.name", "table: 'events' is not 'namespace.name'"),
        ("bad check", "checks.broken:"),
        ("bad derive", "derive.ratio:"),
    ],
)
def test_bad_input_is_a_spec_error_and_the_catalog_is_unchanged(
    spark: SparkSession,
    catalog: Catalog,
    source: Path,
    tmp_path: Path,
    case: str,
    message: str,
) -> None:
    before = catalog_state(catalog)
    spec_path = write_spec(tmp_path, _bad(case, tmp_path, source))
    with pytest.raises(SpecError) as info:
        run(spec_path, spark=spark, catalog=catalog)
    assert message in str(info.value)
    assert catalog_state(catalog) == before


def test_bad_run_id_is_refused_before_any_work(catalog: Catalog, source: Path) -> None:
    with pytest.raises(SpecError, match="run id"):
        run(CleanSpec.from_dict(spec_dict(source)), catalog=catalog, run_id="../escape")


def test_reconciliation_mismatch_aborts_both_tables(
    spark: SparkSession, catalog: Catalog, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobs.clean.job as job

    real_count = job._count_by_reason

    def fake_miscount(tagged: Any) -> dict[str | None, int]:
        # A fake: pretend the count saw one more valid row than the write stages.
        counts = real_count(tagged)
        counts[None] = counts.get(None, 0) + 1
        return counts

    monkeypatch.setattr(job, "_count_by_reason", fake_miscount)
    with pytest.raises(CommitError, match="reconciliation failed"):
        run(CleanSpec.from_dict(spec_dict(source)), spark=spark, catalog=catalog)
    for name in ("test.events", "test.events__rejects"):
        table = catalog.load_table(name)
        assert table.current_snapshot() is None
        data = Path(table.metadata.location.removeprefix("file://")) / "data"
        assert not [p for p in data.rglob("*") if p.is_file()]  # staged files deleted


def test_source_is_read_once_then_served_from_the_cache(
    spark: SparkSession, catalog: Catalog, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobs.clean.job as job

    real_count = job._count_by_reason

    def count_then_remove_source(tagged: Any) -> dict[str | None, int]:
        counts = real_count(tagged)
        source.unlink()  # from here on, re-reading the source would fail the job
        return counts

    monkeypatch.setattr(job, "_count_by_reason", count_then_remove_source)
    report = run(CleanSpec.from_dict(spec_dict(source)), spark=spark, catalog=catalog)
    assert not source.exists()
    assert (report.rows_written, report.rows_rejected) == (3, 6)
    assert len(table_rows(catalog, "test.events")) == 3
    assert len(table_rows(catalog, "test.events__rejects")) == 6


def test_failed_rejects_write_commits_nothing(
    spark: SparkSession, catalog: Catalog, source: Path
) -> None:
    import pyarrow as pa

    # The rejects table exists with an incompatible schema: staging it fails.
    catalog.create_table("test.events__rejects", schema=pa.schema([("other", pa.int64())]))
    with pytest.raises(SpecError, match="other"):
        run(CleanSpec.from_dict(spec_dict(source)), spark=spark, catalog=catalog)
    assert catalog.load_table("test.events").current_snapshot() is None
    assert catalog.load_table("test.events__rejects").current_snapshot() is None


def test_a_write_that_fails_at_runtime_is_a_commit_error(
    spark: SparkSession, catalog: Catalog, source: Path
) -> None:
    # Division by zero only fails when Spark computes it (ANSI SQL), inside the write job.
    spec = CleanSpec.from_dict(spec_dict(source, derive={"boom": "score div (score - score)"}))
    with pytest.raises(CommitError, match="nothing was committed"):
        run(spec, spark=spark, catalog=catalog)
    assert catalog.load_table("test.events").current_snapshot() is None
    assert not catalog.table_exists("test.events__rejects")


def test_report_is_json_able() -> None:
    report = CleanReport(
        rows_in=3,
        rows_written=1,
        rows_rejected=2,
        rejects_by_reason={"duplicate": 1, "cast:a": 1},
        table="a.b",
        rejects_table="a.b__rejects",
        snapshot_id=1,
        rejects_snapshot_id=2,
        run_id="r",
        seconds=0.5,
    )
    data = report.to_dict()
    assert list(data["rejects_by_reason"]) == ["cast:a", "duplicate"]
    assert data["already_committed"] is False
    import json

    assert json.loads(report.to_json()) == data
