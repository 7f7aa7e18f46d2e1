"""Fixtures of the sparkapps tests: the operator CRDs (skip only if absent) and manifests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, crds_dir

#: the start of the skip reason, counted by the terminal summary below
CRDS_MISSING = "Spark operator CRDs not found"


@pytest.fixture(scope="session")
def crds() -> None:
    """Skip (with the reason) only when the operator CRD folder is absent."""
    if not crds_dir().is_dir():
        pytest.skip(
            f"{CRDS_MISSING} at {crds_dir()} "
            "(set ICEFEED_CRDS_DIR or put shared/crds beside the repository)"
        )


@pytest.fixture()
def clean_app() -> dict[str, Any]:
    """A deep copy of the shipped clean-flights SparkApplication."""
    return copy.deepcopy(load_manifest(MANIFEST_DIR / "clean-flights.yaml"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One loud line when tests skipped because the operator's CRDs are absent."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if CRDS_MISSING in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests SKIPPED: {CRDS_MISSING} at {crds_dir()} "
            "(set ICEFEED_CRDS_DIR or put shared/crds beside the repository)",
            yellow=True,
            bold=True,
        )
