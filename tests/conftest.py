"""Session-wide fixtures: one SparkSession for the whole run, one catalog per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Spark's Python workers must run this interpreter (the venv's), and so must
# every subprocess a test starts.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# A test must never pick up a developer's own ~/.pyiceberg.yaml.
os.environ["PYICEBERG_HOME"] = str(Path(__file__).parent / "support" / "no-pyiceberg-home")

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one local SparkSession of the test run (2 cores, small shuffles)."""
    from jobs.spark import get_spark

    session = get_spark(
        "icefeed-tests",
        master="local[2]",
        conf={"spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "2"},
    )
    yield session
    session.stop()


@pytest.fixture()
def icefeed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ICEFEED_HOME (embedded catalog + warehouse) for one test."""
    home = tmp_path / "icefeed-home"
    monkeypatch.setenv("ICEFEED_HOME", str(home))
    return home


@pytest.fixture()
def catalog(icefeed_home: Path) -> Catalog:
    """A fresh embedded SQLite catalog with the namespace ``test`` created."""
    from jobs.catalog import load_catalog

    cat = load_catalog()
    cat.create_namespace("test")
    return cat
