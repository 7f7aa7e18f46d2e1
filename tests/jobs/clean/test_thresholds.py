"""jobs.clean.thresholds: a run over its reject threshold commits nothing and names the rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.clean import CleanSpec, run
from jobs.clean.thresholds import Severity, breaches, severity_of
from jobs.errors import RejectThresholdError, SpecError
from tests.jobs.clean.test_job import EXPECTED_REASONS, spec_dict

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

WARN, FAIL = Severity.WARN, Severity.FAIL


def test_an_exact_reason_wins_over_its_family() -> None:
    severities = {"check": WARN, "check:even": FAIL}
    assert severity_of("check:even", severities) is FAIL
    assert severity_of("check:odd", severities) is WARN
    assert severity_of("cast:x", severities) is None


def test_no_thresholds_never_breach() -> None:
    found = breaches(
        rows_in=10, rejects_by_reason={"cast:a": 10}, severities={}, max_reject_fraction=None
    )
    assert found == []


def test_warn_rules_do_not_count_and_fail_rules_always_do() -> None:
    counts = {"cast:a": 3, "check:even": 1, "duplicate": 5}
    severities = {"duplicate": WARN, "check:even": FAIL}
    found = breaches(
        rows_in=100, rejects_by_reason=counts, severities=severities, max_reject_fraction=0.02
    )
    assert [b.rules for b in found] == [("check:even",), ("cast:a 3 (3.00%)",)]
    assert found[1].rejected == 3 and found[1].fraction == pytest.approx(0.03)
    assert "check:even (severity fail) rejected 1 rows (1.00%)" in str(found[0])
    assert "> max_reject_fraction 2.00%" in str(found[1])
    # At the limit is allowed; the duplicates (warn) never count.
    assert (
        breaches(
            rows_in=100,
            rejects_by_reason=counts,
            severities={"duplicate": WARN, "check": WARN},
            max_reject_fraction=0.03,
        )
        == []
    )


@given(
    rows_in=st.integers(1, 1000),
    rejected=st.integers(0, 1000),
    limit=st.floats(0.0, 1.0),
)
def test_the_fraction_breaches_exactly_when_over_the_limit(
    rows_in: int, rejected: int, limit: float
) -> None:
    rejected = min(rejected, rows_in)
    found = breaches(
        rows_in=rows_in,
        rejects_by_reason={"cast:a": rejected},
        severities={},
        max_reject_fraction=limit,
    )
    assert bool(found) == (rejected / rows_in > limit)


@pytest.mark.parametrize(
    ("severity", "text"),
    [
        ({"nope": "warn"}, "severity.nope: 'nope' is not one of cast, required"),
        ({"check:missing": "fail"}, "'missing' is not a check; valid: even_score"),
        ({"cast:absent": "fail"}, "'absent' is not a declared (source) column"),
        ({"cast": "loud"}, "severity.cast: Input should be 'warn' or 'fail'"),
    ],
)
def test_bad_severity_entries_are_spec_errors(
    tmp_path: Path, severity: dict[str, str], text: str
) -> None:
    with pytest.raises(SpecError, match=text.replace("(", r"\(").replace(")", r"\)")):
        CleanSpec.from_dict(spec_dict(tmp_path / "x.csv", severity=severity))
    with pytest.raises(SpecError, match="max_reject_fraction: Input should be less than"):
        CleanSpec.from_dict(spec_dict(tmp_path / "x.csv", max_reject_fraction=1.5))


def _state(catalog: Catalog, warehouse: Path) -> tuple[object, ...]:
    snapshots = tuple(
        tuple(s.snapshot_id for s in catalog.load_table(name).snapshots())
        for name in ("test.events", "test.events__rejects")
    )
    return snapshots, sorted(str(p) for p in warehouse.rglob("*") if p.is_file())


@pytest.mark.spark
def test_a_run_over_its_threshold_leaves_both_tables_exactly_as_they_were(
    spark: SparkSession, catalog: Catalog, source: Path, icefeed_home: Path
) -> None:
    first = run(CleanSpec.from_dict(spec_dict(source)), spark=spark, catalog=catalog)
    before = _state(catalog, icefeed_home)
    assert before[0] == ((first.snapshot_id,), (first.rejects_snapshot_id,))

    over = spec_dict(source, max_reject_fraction=0.5)  # 6 of 9 rows rejected
    with pytest.raises(RejectThresholdError) as info:
        run(CleanSpec.from_dict(over), spark=spark, catalog=catalog)
    message = str(info.value)
    assert (
        "nothing was committed" in message
        and "rejected 6 rows (66.67%) > max_reject_fraction 50.00%" in message
    )
    assert all(f"{reason} 1 (11.11%)" in message for reason in EXPECTED_REASONS)
    assert _state(catalog, icefeed_home) == before

    failing = spec_dict(source, severity={"check:even_score": "fail"})
    with pytest.raises(RejectThresholdError, match=r"check:even_score \(severity fail\)"):
        run(CleanSpec.from_dict(failing), spark=spark, catalog=catalog)
    assert _state(catalog, icefeed_home) == before

    # Warn rules are quarantined and reported, and never fail the run.
    lenient = spec_dict(
        source,
        max_reject_fraction=0.2,
        severity={
            "cast": "warn",
            "range": "warn",
            "allowed": "warn",
            "duplicate": "warn",
            "check": "warn",
        },
    )
    report = run(CleanSpec.from_dict(lenient), spark=spark, catalog=catalog)
    assert report.rows_rejected == 6 and report.rejects_by_reason == EXPECTED_REASONS
    assert _state(catalog, icefeed_home)[0] != before[0]
