"""Settings every role shares: TLS files, the bearer token, the heartbeat period.

Everything here is validated once, at construction; the token is a pydantic
``SecretStr`` so it never shows in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from jobs.errors import SpecError

log = logging.getLogger(__name__)

TOKEN_ENV = "ICEFEED_TOKEN"
TOKEN_FILE_ENV = "ICEFEED_TOKEN_FILE"

DEFAULT_HEARTBEAT_SECONDS = 2.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

_FILE_FIELDS = (
    "cert_file",
    "key_file",
    "ca_file",
    "client_ca_file",
    "client_cert_file",
    "client_key_file",
)


@dataclass(frozen=True)
class TLSConfig:
    """PEM files (and a name) for ``grpc+tls``, optionally mutual TLS.

    A server needs ``cert_file`` and ``key_file``. A client needs the root
    certificate(s) to trust: ``ca_file``, or — for a self-signed server
    certificate — ``cert_file`` itself (used when ``ca_file`` is None).

    Mutual TLS: a server given ``client_ca_file`` refuses every client without a
    certificate signed by it; a client presents ``client_cert_file`` +
    ``client_key_file`` (default: ``cert_file`` + ``key_file``, so one
    certificate per session serves both ways). ``server_name`` overrides the
    name a client checks the server's certificate against (for servers reached
    by an address the certificate does not carry).
    Raises SpecError at construction if a named file does not exist.
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    client_ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        for name in _FILE_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not path.is_file():
                raise SpecError(f"tls.{name}: {str(path)!r} is not a readable file")
            object.__setattr__(self, name, path)
        if (self.cert_file is None) != (self.key_file is None):
            raise SpecError("tls: cert_file and key_file go together (give both or neither)")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise SpecError(
                "tls: client_cert_file and client_key_file go together (give both or neither)"
            )
        if self.cert_file is None and self.ca_file is None:
            raise SpecError("tls: give cert_file+key_file (server) or ca_file (client)")
        if self.server_name is not None and (
            not isinstance(self.server_name, str) or not self.server_name.strip()
        ):
            raise SpecError(f"tls.server_name: {self.server_name!r} must be a DNS name or None")

    def server_certificates(self) -> list[tuple[bytes, bytes]]:
        """Return ``[(cert_pem, key_pem)]`` for ``FlightServerBase(tls_certificates=...)``.

        Raises SpecError if this config has no certificate/key pair.
        """
        if self.cert_file is None or self.key_file is None:
            raise SpecError("tls: a server needs cert_file and key_file")
        return [(self.cert_file.read_bytes(), self.key_file.read_bytes())]

    def server_kwargs(self) -> dict[str, Any]:
        """Return the ``FlightServerBase`` TLS keyword arguments (mTLS with ``client_ca_file``).

        Raises:
            SpecError: this config has no certificate/key pair.
        """
        kwargs: dict[str, Any] = {"tls_certificates": self.server_certificates()}
        if self.client_ca_file is not None:
            kwargs["verify_client"] = True
            kwargs["root_certificates"] = self.client_ca_file.read_bytes()
        return kwargs

    def client_kwargs(self) -> dict[str, Any]:
        """Return the ``FlightClient`` TLS keyword arguments: roots, identity, name override."""
        kwargs: dict[str, Any] = {"tls_root_certs": self.root_certs()}
        cert = self.client_cert_file if self.client_cert_file is not None else self.cert_file
        key = self.client_key_file if self.client_cert_file is not None else self.key_file
        if cert is not None and key is not None:
            kwargs["cert_chain"] = cert.read_bytes()
            kwargs["private_key"] = key.read_bytes()
        if self.server_name is not None:
            kwargs["override_hostname"] = self.server_name
        return kwargs

    def root_certs(self) -> bytes:
        """Return the PEM roots a client trusts: ``ca_file``, else ``cert_file`` (self-signed)."""
        path = self.ca_file if self.ca_file is not None else self.cert_file
        assert path is not None  # guaranteed by __post_init__
        return path.read_bytes()


def is_loopback(host: str) -> bool:
    """Return True if ``host`` binds only this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_bind(host: str, tls: TLSConfig | None, *, insecure: bool) -> None:
    """Refuse a plaintext bind of a non-loopback address unless the operator said ``insecure``.

    Args:
        host: the bind address.
        tls: the TLS settings (None: plain gRPC).
        insecure: the operator's explicit consent to clear text on the network.

    Raises:
        SpecError: ``host`` is reachable from other machines, ``tls`` is None and
            ``insecure`` is False.
    """
    if tls is not None or insecure or is_loopback(host):
        return
    raise SpecError(
        f"host: binding {host!r} without TLS would send the bearer token and all data in "
        "clear text to the network; give a certificate (--tls-cert/--tls-key, tls=TLSConfig) "
        "or, on a network you trust, say so with --insecure (insecure=True)"
    )


def warn_if_insecure(role: str, host: str, tls: TLSConfig | None) -> None:
    """Log a warning when ``role`` serves plain gRPC on a non-loopback ``host``."""
    if tls is None and not is_loopback(host):
        log.warning(
            "%s listens on %s WITHOUT TLS (--insecure): the bearer token and every row "
            "travel in clear text",
            role,
            host,
        )


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
