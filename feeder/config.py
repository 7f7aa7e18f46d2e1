"""Runtime settings of the feeder: TLS files, the bearer token, and one FeederConfig.

Everything here is validated once, at construction; the token is a pydantic
``SecretStr`` so it never shows in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from jobs.errors import SpecError

TOKEN_ENV = "ICEFEED_TOKEN"
TOKEN_FILE_ENV = "ICEFEED_TOKEN_FILE"

DEFAULT_SLICE_BYTES = 128 * 1024 * 1024
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_HEARTBEAT_SECONDS = 2.0


@dataclass(frozen=True)
class TLSConfig:
    """PEM files for ``grpc+tls``.

    A server needs ``cert_file`` and ``key_file``. A client needs the root
    certificate(s) to trust: ``ca_file``, or — for a self-signed server
    certificate — ``cert_file`` itself (used when ``ca_file`` is None).
    Raises SpecError at construction if a named file does not exist.
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file", "ca_file"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not path.is_file():
                raise SpecError(f"tls.{name}: {str(path)!r} is not a readable file")
            object.__setattr__(self, name, path)
        if (self.cert_file is None) != (self.key_file is None):
            raise SpecError("tls: cert_file and key_file go together (give both or neither)")
        if self.cert_file is None and self.ca_file is None:
            raise SpecError("tls: give cert_file+key_file (server) or ca_file (client)")

    def server_certificates(self) -> list[tuple[bytes, bytes]]:
        """Return ``[(cert_pem, key_pem)]`` for ``FlightServerBase(tls_certificates=...)``.

        Raises SpecError if this config has no certificate/key pair.
        """
        if self.cert_file is None or self.key_file is None:
            raise SpecError("tls: a server needs cert_file and key_file")
        return [(self.cert_file.read_bytes(), self.key_file.read_bytes())]

    def root_certs(self) -> bytes:
        """Return the PEM roots a client trusts: ``ca_file``, else ``cert_file`` (self-signed)."""
        path = self.ca_file if self.ca_file is not None else self.cert_file
        assert path is not None  # guaranteed by __post_init__
        return path.read_bytes()


def load_token(token: str | SecretStr | None = None) -> SecretStr | None:
    """Return the feeder's bearer token, or None when the feeder runs without one.

    Order: the explicit ``token``; else env ``ICEFEED_TOKEN``; else the file
    named by env ``ICEFEED_TOKEN_FILE`` (surrounding whitespace stripped).
    Raises SpecError for an explicit empty token or an unreadable/empty token file
    (the message names the file, never its content).
    """
    if token is not None:
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not isinstance(value, str) or not value.strip():
            raise SpecError("token: an explicit token must be a non-empty string")
        return SecretStr(value.strip())
    env_value = os.environ.get(TOKEN_ENV, "").strip()
    if env_value:
        return SecretStr(env_value)
    file_name = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if file_name:
        path = Path(file_name)
        try:
            content = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SpecError(
                f"{TOKEN_FILE_ENV}={file_name!r}: cannot read the token file ({exc.strerror})"
            ) from exc
        if not content:
            raise SpecError(f"{TOKEN_FILE_ENV}={file_name!r}: the token file is empty")
        return SecretStr(content)
    return None


@dataclass(frozen=True, kw_only=True)
class FeederConfig:
    """Everything one feeder session needs, validated at construction.

    ``columns=None`` serves every column; ``nodes=None`` means one data node per
    Spark task slot; ``port=0`` picks a free port; ``cache_dir=None`` uses the
    executors' local dirs (``SPARK_LOCAL_DIRS``); ``row_copy=False`` caches no
    row-major copies of fixed-width columns (half the disk for such tables, slower
    shuffled reads). Raises SpecError on a bad value.
    """

    table: str
    columns: tuple[str, ...] | None = None
    row_filter: str | None = None
    snapshot_id: int | None = None
    nodes: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token: SecretStr | None = field(default=None, repr=False)
    tls: TLSConfig | None = None
    cache_dir: Path | None = None
    slice_bytes: int = DEFAULT_SLICE_BYTES
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    metrics_port: int | None = None
    catalog: str | None = None
    row_copy: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table.strip():
            raise SpecError("table: must be a non-empty table identifier like 'ns.name'")
        if self.columns is not None:
            cols = tuple(self.columns)
            if not cols or not all(isinstance(c, str) and c for c in cols):
                raise SpecError("columns: must be a non-empty list of column names, or None")
            if len(set(cols)) != len(cols):
                raise SpecError(f"columns: duplicate names in {list(cols)}")
            object.__setattr__(self, "columns", cols)
        if self.snapshot_id is not None and (
            isinstance(self.snapshot_id, bool) or not isinstance(self.snapshot_id, int)
        ):
            raise SpecError(f"snapshot_id: {self.snapshot_id!r} is not an integer")
        if self.nodes is not None and (
            isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1
        ):
            raise SpecError(f"nodes: {self.nodes!r} must be an integer >= 1, or None")
        _check_port("port", self.port, allow_none=False)
        _check_port("metrics_port", self.metrics_port, allow_none=True)
        if isinstance(self.slice_bytes, bool) or not isinstance(self.slice_bytes, int):
            raise SpecError(f"slice_bytes: {self.slice_bytes!r} is not an integer")
        if self.slice_bytes < 1:
            raise SpecError(f"slice_bytes: {self.slice_bytes} must be >= 1")
        for name in ("lease_seconds", "heartbeat_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SpecError(f"{name}: {value!r} must be a positive number of seconds")
        if not isinstance(self.row_copy, bool):
            raise SpecError(f"row_copy: {self.row_copy!r} must be true or false")
        if self.token is not None and not isinstance(self.token, SecretStr):
            object.__setattr__(self, "token", load_token(self.token))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))


def _check_port(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SpecError(f"{name}: {value!r} must be an integer port in 0..65535")
