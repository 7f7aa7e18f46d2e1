"""tests.support.postgres: the throwaway server starts on loopback, isolates, and cleans up."""

from __future__ import annotations

import os
import socket

import psycopg2
import pytest

from tests.support.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.slow


def _port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_server_listens_on_loopback_and_is_gone_with_its_files_after_exit() -> None:
    with running_postgres() as server:
        assert server.host == "127.0.0.1"
        assert _port_accepts(server.port)
        assert server.data_dir.is_dir()
        root = server.data_dir.parent
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone() == ("127.0.0.1",)
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (server.user,)
        conn.close()
    assert not _port_accepts(server.port)
    assert not root.exists()


def test_a_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user=postgres_server.user,
            password="not-" + postgres_server.password,
            dbname="postgres",
            connect_timeout=2,
        )


def test_created_databases_are_separate_and_dropped(postgres_server: PostgresServer) -> None:
    first = postgres_server.create_database("iso")
    second = postgres_server.create_database("iso")
    assert first != second
    conn = postgres_server.connect(first)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE only_in_first (x int)")
    postgres_server.drop_database(first)  # FORCE: the open session does not block it
    conn.close()

    conn = postgres_server.connect(second)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_first'")
        assert cur.fetchone() == (0,)
    conn.close()
    postgres_server.drop_database(second)
    conn = postgres_server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname IN (%s, %s)", (first, second))
        assert cur.fetchone() == (0,)
    conn.close()


def test_uri_is_a_psycopg2_sqlalchemy_uri_and_repr_hides_the_password(
    postgres_uri: str, postgres_server: PostgresServer
) -> None:
    assert postgres_uri.startswith("postgresql+psycopg2://")
    assert f"@127.0.0.1:{postgres_server.port}/postgres" in postgres_uri
    assert postgres_server.password not in repr(postgres_server)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to drop to the postgres user")
def test_under_root_the_server_runs_as_the_postgres_user(postgres_server: PostgresServer) -> None:
    conn = postgres_server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    conn.close()
    import pwd

    owner = os.stat(f"/proc/{pid}").st_uid
    assert pwd.getpwuid(owner).pw_name == "postgres"
