"""Fixtures of the sparkapps tests: the operator CRDs (skip only if absent) and manifests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, crds_dir


@pytest.fixture(scope="session")
def crds() -> None:
    """Skip (with the reason) only when the operator CRD folder is absent."""
    if not crds_dir().is_dir():
        pytest.skip(
            f"Spark operator CRDs not found at {crds_dir()} "
            "(set ICEFEED_CRDS_DIR or put shared/crds beside the repository)"
        )


@pytest.fixture()
def clean_app(crds: None) -> dict[str, Any]:
    """A deep copy of the shipped clean-flights SparkApplication."""
    return copy.deepcopy(load_manifest(MANIFEST_DIR / "clean-flights.yaml"))
