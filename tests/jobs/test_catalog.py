"""jobs.catalog.load_catalog against real backends: embedded SQLite, PostgreSQL, S3 (moto).

The PostgreSQL server and the S3-compatible server run on loopback, started
by the session fixtures in tests/conftest.py (tests/support/postgres.py,
tests/support/s3.py).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import S3FileSystem
from pyiceberg.io.pyarrow import PyArrowFileIO

from jobs.catalog import EMBEDDED_CATALOG_NAME, load_catalog
from jobs.errors import CatalogError, IcefeedError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from tests.support.postgres import PostgresServer
    from tests.support.s3 import S3Server

ROWS = pa.table(
    {
        "id": pa.array(range(100), pa.int64()),
        "name": pa.array([f"row-{i}" for i in range(100)], pa.string()),
        "score": pa.array([i / 4 for i in range(100)], pa.float64()),
    }
)


def _round_trip(cat: Catalog, identifier: str = "test.rows") -> pa.Table:
    """Create ``identifier``, append ROWS with pyiceberg, and read it back sorted by id."""
    table = cat.create_table(identifier, schema=ROWS.schema)
    table.append(ROWS)
    return cat.load_table(identifier).scan().to_arrow().sort_by("id")


def _without_icefeed_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICEFEED_HOME", raising=False)


def test_embedded_catalog_finds_a_table_again_on_a_second_load(icefeed_home: Path) -> None:
    first = load_catalog()
    first.create_namespace("test")
    _round_trip(first)

    second = load_catalog()
    assert second.name == EMBEDDED_CATALOG_NAME
    assert second.load_table("test.rows").scan().to_arrow().num_rows == ROWS.num_rows
    assert (icefeed_home / "catalog.db").is_file()
    data_files = list((icefeed_home / "warehouse").rglob("*.parquet"))
    assert data_files, "the embedded warehouse folder holds the table's data files"


def test_embedded_catalog_defaults_to_dot_icefeed_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_icefeed_home(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cat = load_catalog()
    cat.create_namespace("test")
    assert (tmp_path / ".icefeed" / "catalog.db").is_file()
    assert (tmp_path / ".icefeed" / "warehouse").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["catalog", "postgres_catalog", "s3_catalog"])
def test_every_backend_round_trips_a_pyarrow_table(
    backend: str, request: pytest.FixtureRequest
) -> None:
    cat: Catalog = request.getfixturevalue(backend)
    assert _round_trip(cat).equals(ROWS)
    assert [ident for ident in cat.list_tables("test")] == [("test", "rows")]


@pytest.mark.slow
def test_pyiceberg_env_configuration_wins_over_the_embedded_default(
    postgres_server: PostgresServer,
    icefeed_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = postgres_server.create_database("envcat")
    try:
        monkeypatch.setenv("PYICEBERG_CATALOG__DEFAULT__URI", postgres_server.uri(database))
        monkeypatch.setenv("PYICEBERG_CATALOG__DEFAULT__WAREHOUSE", (tmp_path / "wh").as_uri())
        cat = load_catalog()
        try:
            assert cat.name == "default"
            cat.create_namespace("test")
            _round_trip(cat)
        finally:
            cat.engine.dispose()  # type: ignore[attr-defined]

        conn = postgres_server.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT catalog_name, table_namespace, table_name FROM iceberg_tables")
                assert cur.fetchall() == [("default", "test", "rows")]
        finally:
            conn.close()
        assert not (icefeed_home / "catalog.db").exists(), "the embedded catalog stayed unused"
    finally:
        postgres_server.drop_database(database)


@pytest.mark.slow
def test_a_named_catalog_from_env_is_loaded_by_name(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres_server.create_database("named")
    try:
        monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__URI", postgres_server.uri(database))
        monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__WAREHOUSE", (tmp_path / "wh").as_uri())
        cat = load_catalog("lake")
        try:
            assert cat.name == "lake"
            assert cat.engine.url.get_backend_name() == "postgresql"  # type: ignore[attr-defined]
        finally:
            cat.engine.dispose()  # type: ignore[attr-defined]
    finally:
        postgres_server.drop_database(database)


def test_unknown_catalog_name_raises_catalog_error_saying_how_to_configure_it(
    icefeed_home: Path,
) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog("nosuchlake")
    message = str(info.value)
    assert isinstance(info.value, IcefeedError)
    assert "'nosuchlake'" in message
    assert "PYICEBERG_CATALOG__NOSUCHLAKE__URI" in message
    assert not (icefeed_home / "catalog.db").exists()


@pytest.mark.slow
def test_a_configured_catalog_that_fails_to_load_never_shows_its_password(
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_password = "Sup3r-Secret-Wrong-Pa55"
    uri = postgres_server.uri().replace(postgres_server.password, wrong_password)
    monkeypatch.setenv("PYICEBERG_CATALOG__BADPW__URI", uri)
    monkeypatch.setenv("PYICEBERG_CATALOG__BADPW__WAREHOUSE", (tmp_path / "wh").as_uri())

    with caplog.at_level(logging.DEBUG), pytest.raises(CatalogError) as info:
        load_catalog("badpw")

    message = str(info.value)
    assert "'badpw'" in message
    everything_shown = "".join(traceback.format_exception(info.value)) + caplog.text
    assert wrong_password not in everything_shown
    assert postgres_server.password not in everything_shown


@pytest.mark.slow
def test_s3_warehouse_round_trip_writes_objects_to_the_bucket(
    s3_catalog: Catalog, s3_server: S3Server
) -> None:
    warehouse = s3_catalog.properties["warehouse"]
    assert warehouse.startswith(f"s3://{s3_server.bucket}/")
    prefix = warehouse.removeprefix(f"s3://{s3_server.bucket}/")

    assert _round_trip(s3_catalog, "test.events").equals(ROWS)

    keys = s3_server.list_keys(prefix + "/")
    data = [k for k in keys if k.endswith(".parquet") and "/data/" in k]
    metadata = [k for k in keys if k.endswith(".metadata.json")]
    assert data, f"no data files under s3://{s3_server.bucket}/{prefix}: {keys}"
    assert metadata, f"no table metadata under s3://{s3_server.bucket}/{prefix}: {keys}"
    table = s3_catalog.load_table("test.events")
    assert table.metadata_location.startswith(warehouse)
    assert isinstance(table.io, PyArrowFileIO)

    # The data file is plain Parquet that pyarrow's own S3 filesystem reads back.
    s3 = S3FileSystem(
        endpoint_override=s3_server.endpoint,
        access_key=s3_server.access_key_id,
        secret_key=s3_server.secret_access_key,
        region=s3_server.region,
    )
    read_back = pq.read_table(f"{s3_server.bucket}/{data[0]}", filesystem=s3)
    assert read_back.num_rows == ROWS.num_rows


@pytest.mark.slow
def test_test_servers_keep_their_secrets_out_of_repr(
    s3_server: S3Server, postgres_server: PostgresServer
) -> None:
    assert s3_server.secret_access_key not in repr(s3_server)
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] == s3_server.secret_access_key
    assert postgres_server.password not in repr(postgres_server)


def test_a_misconfigured_uri_error_message_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pyiceberg's own ValueError quotes the whole URI (password included); ours must not.
    secret = "Another-Secret-Pa55"
    monkeypatch.setenv("PYICEBERG_CATALOG__ODD__URI", f"mysql://icefeed:{secret}@127.0.0.1:1/db")
    with pytest.raises(CatalogError) as info:
        load_catalog("odd")
    assert "'odd'" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in repr(info.value)


def test_mask_credentials_hides_uri_passwords() -> None:
    from jobs.catalog import mask_credentials

    text = "cannot reach postgresql+psycopg2://icefeed:s3cr3t@127.0.0.1:5432/db (s3://b/k)"
    masked = mask_credentials(text)
    assert "s3cr3t" not in masked
    assert "postgresql+psycopg2://icefeed:***@127.0.0.1:5432/db" in masked
    assert masked.endswith("(s3://b/k)")
