"""Run a clean job: read once, tag every row, stage both tables, reconcile, commit both.

The order of events is what makes a run safe:

1. *Preflight*, before Spark starts: a local source that matches nothing is
   a SpecError.
2. If this run id already committed to both tables, return the stored report
   (counts are kept in the snapshot summary): a re-run never duplicates data.
3. Read the source once, tag each row with its first failing rule, persist the
   tagged frame, count rows per reason (an empty source is a SpecError).
4. Stage the clean rows and the rejected rows (data files written, nothing
   committed), then assert ``rows_in == rows_written + rows_rejected`` against
   what was actually staged. On a mismatch both are aborted → CommitError.
   Before staging, rejects over the spec's thresholds (:mod:`jobs.clean.thresholds`)
   raise RejectThresholdError: nothing is written to either table.
5. Commit both with the same run id (clean table first). A crash between the
   two commits is repaired by re-running with the same run id: the writer skips
   the table that already has it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.clean.report import CleanReport, counts_from_summary
from jobs.clean.source import check_source_exists, read_source
from jobs.clean.spec import CleanSpec
from jobs.clean.thresholds import breaches
from jobs.clean.transform import REASON_COLUMN, rejected_rows, tag_rows, valid_rows
from jobs.errors import CommitError, RejectThresholdError, SpecError
from jobs.run_ids import check_run_id, new_run_id

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import DataFrame, SparkSession

    from jobs.writer import CommitResult, StagedWrite

log = logging.getLogger(__name__)


def preflight(spec: CleanSpec) -> None:
    """Checks that need no Spark: make sure the source exists.

    Raises SpecError if a local source path matches nothing.
    """
    check_source_exists(spec.source)


def run(
    spec: CleanSpec | str | Path,
    *,
    spark: SparkSession | None = None,
    catalog: Catalog | None = None,
    run_id: str | None = None,
) -> CleanReport:
    """Clean ``spec``'s source into its table and rejects table; return the report.

    Args:
        spec: A CleanSpec or the path of its YAML.
        spark: The session (default: :func:`jobs.spark.get_spark`).
        catalog: The Iceberg catalog (default: :func:`jobs.catalog.load_catalog`).
        run_id: The idempotency key (:mod:`jobs.run_ids`); a fresh ``clean-…`` id if None.

    Returns:
        The run's report (the stored one if ``run_id`` already committed).

    Raises:
        SpecError: a bad spec, source or run id (nothing written).
        RejectThresholdError: rejects over the spec's max_reject_fraction or a
            severity-fail rule rejected rows (nothing written).
        CommitError: staging, the reconciliation or a commit failed (nothing
            committed by this call for the table that failed).
    """
    started = time.monotonic()
    if not isinstance(spec, CleanSpec):
        spec = CleanSpec.from_yaml(spec)
    run_id = check_run_id(run_id) if run_id is not None else new_run_id("clean")
    preflight(spec)
    if catalog is None:
        from jobs.catalog import load_catalog

        catalog = load_catalog()
    earlier = earlier_report(spec, catalog=catalog, run_id=run_id, started=started)
    if earlier is not None:
        log.info("run %s already committed to %s; nothing written", run_id, spec.table)
        return earlier
    if spark is None:
        from jobs.spark import get_spark

        spark = get_spark("icefeed-clean")
    from pyspark import StorageLevel

    spark.sparkContext.setJobDescription(f"icefeed clean {spec.table} ({run_id})")
    tagged = tag_rows(read_source(spark, spec.source, spec.columns), spec)
    tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # Both projections are analysed now: a bad derive fails before any Spark job.
        valid, rejects = valid_rows(tagged, spec), rejected_rows(tagged, spec, run_id)
        by_reason = _count_by_reason(tagged)
        rows_written = by_reason.pop(None, 0)
        rejects_by_reason = {str(k): v for k, v in by_reason.items()}
        rows_rejected = sum(rejects_by_reason.values())
        rows_in = rows_written + rows_rejected
        if rows_in == 0:
            raise SpecError(f"source: {spec.source.path!r} is empty (no rows to clean)")
        check_thresholds(spec, rows_in=rows_in, rejects_by_reason=rejects_by_reason)
        report = CleanReport(
            rows_in=rows_in,
            rows_written=rows_written,
            rows_rejected=rows_rejected,
            rejects_by_reason=rejects_by_reason,
            table=spec.table,
            rejects_table=spec.rejects_table,
            snapshot_id=None,
            rejects_snapshot_id=None,
            run_id=run_id,
            seconds=0.0,
        )
        clean_result, rejects_result = _write_both(
            spec, valid, rejects, catalog=catalog, report=report
        )
    finally:
        tagged.unpersist()
        spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
    final = dataclasses.replace(
        report,
        snapshot_id=clean_result.snapshot_id,
        rejects_snapshot_id=rejects_result.snapshot_id,
        seconds=round(time.monotonic() - started, 3),
        already_committed=clean_result.already_committed and rejects_result.already_committed,
    )
    log.info(
        "clean %s: %d in, %d written, %d rejected in %.1fs",
        spec.table,
        final.rows_in,
        final.rows_written,
        final.rows_rejected,
        final.seconds,
    )
    return final


def check_thresholds(spec: CleanSpec, *, rows_in: int, rejects_by_reason: dict[str, int]) -> None:
    """Refuse a run whose rejects break the spec's thresholds, before anything is staged.

    Raises:
        RejectThresholdError: naming each rule over its threshold and its fraction.
    """
    found = breaches(
        rows_in=rows_in,
        rejects_by_reason=rejects_by_reason,
        severities=spec.severity,
        max_reject_fraction=spec.max_reject_fraction,
    )
    if found:
        raise RejectThresholdError(
            f"{spec.table}: over the reject threshold, nothing was committed "
            f"({rows_in} rows read): {'; '.join(str(b) for b in found)}. Fix the source or "
            "the rules, or relax max_reject_fraction / severity in the spec"
        )


def _count_by_reason(tagged: DataFrame) -> dict[str | None, int]:
    # One small aggregation over the persisted frame; only the counts reach the driver.
    return {
        row[REASON_COLUMN]: int(row["count"])
        for row in tagged.groupBy(REASON_COLUMN).count().collect()
    }


def _write_both(
    spec: CleanSpec,
    valid: DataFrame,
    rejects: DataFrame,
    *,
    catalog: Catalog,
    report: CleanReport,
) -> tuple[CommitResult, CommitResult]:
    """Stage both tables, reconcile against what was staged, then commit both."""
    from jobs.writer import abort_staged, commit_staged, stage_write

    for table in (spec.table, spec.rejects_table):
        catalog.create_namespace_if_not_exists(table.split(".")[0])
    mode = spec.mode
    staged_clean = stage_write(
        valid,
        spec.table,
        catalog=catalog,
        mode=mode,
        run_id=report.run_id,
        partition_by=list(spec.partition_by) or None,
    )
    try:
        staged_rejects = stage_write(
            rejects, spec.rejects_table, catalog=catalog, mode=mode, run_id=report.run_id
        )
    except BaseException:
        abort_staged(staged_clean, catalog=catalog)
        raise
    clean_rows, rejects_rows = _staged_rows(staged_clean), _staged_rows(staged_rejects)
    if (
        clean_rows + rejects_rows != report.rows_in
        or clean_rows != report.rows_written
        or rejects_rows != report.rows_rejected
    ):
        abort_staged(staged_clean, catalog=catalog)
        abort_staged(staged_rejects, catalog=catalog)
        raise CommitError(
            f"reconciliation failed for run {report.run_id}: read {report.rows_in} rows but "
            f"staged {clean_rows} clean + {rejects_rows} rejected "
            f"(expected {report.rows_written} + {report.rows_rejected}); nothing was committed"
        )
    properties = report.summary_properties()
    try:
        clean_result = commit_staged(staged_clean, catalog=catalog, snapshot_properties=properties)
    except BaseException:
        abort_staged(staged_rejects, catalog=catalog)
        raise
    rejects_result = commit_staged(staged_rejects, catalog=catalog, snapshot_properties=properties)
    return clean_result, rejects_result


def _staged_rows(staged: StagedWrite) -> int:
    # A table this run id already committed to (a crash between the two commits)
    # stages nothing; its rows are those of the earlier commit.
    return staged.previous.rows if staged.previous is not None else staged.rows


def earlier_report(
    spec: CleanSpec, *, catalog: Catalog, run_id: str, started: float | None = None
) -> CleanReport | None:
    """The stored report if ``run_id`` already committed to both tables, else None.

    Needs no Spark: the counts come from the clean table's snapshot summary.
    """
    started = time.monotonic() if started is None else started
    from jobs.writer import find_run

    results = []
    for table in (spec.table, spec.rejects_table):
        result = find_run(table, run_id, catalog=catalog)
        if result is None:
            return None
        results.append(result)
    clean_result, rejects_result = results
    summary = _snapshot_summary(catalog, spec.table, clean_result.snapshot_id)
    counts = counts_from_summary(summary)
    if counts is None:
        rows_written, rows_rejected = int(clean_result.rows), int(rejects_result.rows)
        counts = (rows_written + rows_rejected, rows_written, rows_rejected, {})
    rows_in, rows_written, rows_rejected, by_reason = counts
    return CleanReport(
        rows_in=rows_in,
        rows_written=rows_written,
        rows_rejected=rows_rejected,
        rejects_by_reason=by_reason,
        table=spec.table,
        rejects_table=spec.rejects_table,
        snapshot_id=clean_result.snapshot_id,
        rejects_snapshot_id=rejects_result.snapshot_id,
        run_id=run_id,
        seconds=round(time.monotonic() - started, 3),
        already_committed=True,
    )


def _snapshot_summary(catalog: Catalog, table: str, snapshot_id: int | None) -> dict[str, str]:
    if snapshot_id is None:
        return {}
    snapshot = catalog.load_table(table).snapshot_by_id(snapshot_id)
    if snapshot is None or snapshot.summary is None:
        return {}
    return {str(k): str(v) for k, v in snapshot.summary.additional_properties.items()}
