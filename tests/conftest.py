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

    from tests.support.postgres import PostgresServer
    from tests.support.s3 import S3Server


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


# --- catalog backends: PostgreSQL and S3-compatible servers on loopback -------------
# (owned by the catalog-backends work; servers start once per session, on first use)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1 for the whole test session."""
    from tests.support.postgres import running_postgres

    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_uri(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URI (``postgresql+psycopg2://…``) of the server's default database."""
    return postgres_server.uri()


@pytest.fixture()
def postgres_catalog(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Catalog]:
    """A pyiceberg SqlCatalog in a fresh PostgreSQL database, namespace ``test`` created."""
    from pyiceberg.catalog.sql import SqlCatalog

    database = postgres_server.create_database("catalog")
    warehouse = tmp_path / "pg-warehouse"
    warehouse.mkdir()
    cat = SqlCatalog("pg", uri=postgres_server.uri(database), warehouse=warehouse.as_uri())
    cat.create_namespace("test")
    yield cat
    cat.engine.dispose()
    postgres_server.drop_database(database)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 with one bucket; ``.env`` holds its credentials."""
    from tests.support.s3 import running_s3

    with running_s3() as server:
        yield server


@pytest.fixture()
def s3_catalog(s3_server: S3Server, tmp_path: Path) -> Iterator[Catalog]:
    """A SQLite SqlCatalog whose warehouse is ``s3://<bucket>/<unique prefix>`` on moto."""
    import uuid

    from pyiceberg.catalog.sql import SqlCatalog

    prefix = f"warehouse-{uuid.uuid4().hex[:12]}"
    cat = SqlCatalog(
        "s3",
        uri=f"sqlite:///{tmp_path / 's3-catalog.db'}",
        warehouse=f"s3://{s3_server.bucket}/{prefix}",
        **s3_server.fileio_properties(),
    )
    cat.create_namespace("test")
    yield cat
    cat.engine.dispose()


# --- end of catalog backends ---------------------------------------------------------
