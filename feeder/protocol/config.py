"""Settings every role shares: TLS files, the bearer token, the heartbeat period.

Everything here is validated once, at construction; the token is a pydantic
``SecretStr`` so it never shows in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from jobs.errors import SpecError

TOKEN_ENV = "ICEFEED_TOKEN"
TOKEN_FILE_ENV = "ICEFEED_TOKEN_FILE"

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
