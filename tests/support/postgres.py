"""A throwaway PostgreSQL server on 127.0.0.1 for the SQL-catalog tests.

``running_postgres()`` runs ``initdb`` in a fresh temporary folder, starts
``postgres`` on a free loopback port, waits until it accepts a password
login, and on exit stops it (fast shutdown) and removes the folder.
PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user (installed with Debian's package), which owns the
folder. Durability is switched off (fsync, synchronous_commit): the data is
thrown away anyway, and it keeps start and DDL fast.

The server binaries come from ``PATH`` or ``/usr/lib/postgresql/*/bin``;
``make system-deps`` (tests/support/install_system_deps.sh) installs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVER_USER = "postgres"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.05
_PORT_ATTEMPTS = 3
_SAFE_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server did not start."""


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """Where a running throwaway server listens and how to log in (password kept out of repr)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    data_dir: Path

    def uri(self, database: str = "postgres") -> str:
        """SQLAlchemy URI (psycopg2 driver) of ``database`` on this server."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg2 connection in autocommit mode (for CREATE/DROP DATABASE)."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=2,
        )
        conn.autocommit = True
        return conn

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database with a unique name and return the name."""
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        self._execute(f'CREATE DATABASE "{_checked(name)}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting any session still open on it."""
        self._execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    def _execute(self, sql: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()


def _checked(name: str) -> str:
    if not _SAFE_DB_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    return name


def find_bin_dir() -> Path:
    """Folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version wins).

    Raises PostgresUnavailable naming the command that installs them.
    """
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versioned, key=lambda p: _version_key(p.parent.name), reverse=True)
    for bin_dir in candidates:
        if all((bin_dir / exe).is_file() for exe in ("initdb", "postgres")):
            return bin_dir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found in PATH or "
        "/usr/lib/postgresql/*/bin; run `make system-deps` (apt-get install postgresql)"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_kwargs() -> dict[str, Any]:
    """subprocess kwargs that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PostgresUnavailable(
            f"running as root but there is no {SERVER_USER!r} user to run PostgreSQL as; "
            "install Debian's postgresql package (`make system-deps`)"
        ) from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _wait_until_ready(
    server: PostgresServer, proc: subprocess.Popen[bytes], log_file: Path
) -> None:
    """Poll a password login until it works, the process dies, or the timeout passes."""
    import psycopg2

    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        try:
            server.connect().close()
            return
        except psycopg2.OperationalError as exc:
            last_error = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
        try:
            # Doubles as the poll interval: returns early only if the server exited.
            code = proc.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            continue
        raise PostgresUnavailable(
            f"postgres exited with code {code} during start; log:\n{_tail(log_file)}"
        )
    raise PostgresUnavailable(
        f"postgres did not accept connections within {START_TIMEOUT_S:.0f}s "
        f"(last error: {last_error}); log:\n{_tail(log_file)}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast shutdown"
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("postgres (pid %d) ignored fast shutdown; killing it", proc.pid)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _initdb(bin_dir: Path, root: Path, user: str, password: str, run_as: dict[str, Any]) -> Path:
    """Create a cluster under ``root/data`` whose ``user`` logs in over TCP with ``password``."""
    data_dir = root / "data"
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                *("--pgdata", str(data_dir), "--username", user, "--pwfile", str(pwfile)),
                *("--auth-host", "scram-sha-256", "--auth-local", "trust"),
                *("--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"),
            ],
            check=True,
            cwd=root,
            capture_output=True,
            **run_as,
        )
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if exc.stderr else ""
        raise PostgresUnavailable(f"initdb failed ({exc.returncode}): {stderr}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    return data_dir


def _start(
    bin_dir: Path, root: Path, server: PostgresServer, run_as: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """Start ``postgres`` for ``server`` and return once it accepts a password login."""
    sock_dir = root / "sock"
    sock_dir.mkdir(exist_ok=True)
    if run_as:
        os.chown(sock_dir, run_as["user"], run_as["group"])
    log_file = root / f"postgres-{server.port}.log"
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(sock_dir),
        # Throwaway data: no durability, small memory, quick start.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "shared_buffers": "32MB",
    }
    args = [str(bin_dir / "postgres"), "-D", str(server.data_dir), "-p", str(server.port)]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    with open(log_file, "wb") as log_out:
        proc = subprocess.Popen(
            args,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest must not kill it mid-test
            **run_as,
        )
    try:
        _wait_until_ready(server, proc, log_file)
    except BaseException:
        _stop(proc)
        raise
    return proc


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server on 127.0.0.1; stop it and delete its files on exit.

    Raises PostgresUnavailable if the binaries are missing or the server does not start.
    """
    bin_dir = find_bin_dir()
    run_as = _run_as_kwargs()
    root = Path(tempfile.mkdtemp(prefix="icefeed-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if run_as:
            os.chown(root, run_as["user"], run_as["group"])
        user, password = "icefeed", secrets.token_urlsafe(18)
        data_dir = _initdb(bin_dir, root, user, password, run_as)
        for attempt in range(_PORT_ATTEMPTS):
            server = PostgresServer(
                host="127.0.0.1", port=_free_port(), user=user, password=password, data_dir=data_dir
            )
            try:
                proc = _start(bin_dir, root, server, run_as)
                break
            except PostgresUnavailable as exc:
                # The free port can be taken between probing and binding; try another.
                if attempt + 1 == _PORT_ATTEMPTS or "could not bind" not in str(exc):
                    raise
        assert proc is not None
        log.info("PostgreSQL started on %s:%d (pid %d)", server.host, server.port, proc.pid)
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)
