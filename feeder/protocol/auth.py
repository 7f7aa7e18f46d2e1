"""Bearer-token auth and TLS plumbing shared by the coordinator, data nodes and client.

Server side: :func:`server_middleware` returns the ``middleware=`` dict for a
``FlightServerBase``; every call without ``authorization: Bearer <token>`` (when
a token is set) is refused with ``FlightUnauthenticatedError``, compared in
constant time. The same middleware records the caller's ``x-icefeed-job``
header, read back in a handler with :func:`caller_job`, and the
``x-icefeed-node-proof`` header of node-only calls (:func:`caller_node_proof`,
checked by :mod:`feeder.protocol.node_auth`), and the ``x-icefeed-chunks`` hint of a
``do_get`` (:func:`caller_chunking`, see :mod:`feeder.protocol.chunking`).

Client side: :func:`call_options` builds the headers and timeout of a call,
:func:`connect` opens a ``FlightClient`` (trusting the TLS roots when given).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.protocol import fork_guard
from feeder.protocol.chunking import CHUNKS_HEADER, Chunking, parse_chunking
from feeder.protocol.config import TLSConfig
from feeder.protocol.window_gather import WINDOWS_HEADER

log = logging.getLogger(__name__)

MIDDLEWARE_KEY = "icefeed"
AUTH_HEADER = "authorization"
JOB_HEADER = "x-icefeed-job"
NODE_PROOF_HEADER = "x-icefeed-node-proof"
#: the consumer's host on ``do_get``: a node counts the rows it serves to its own host
HOST_HEADER = "x-icefeed-host"
_BEARER = "Bearer "


def _secret(token: str | SecretStr | None) -> str | None:
    if token is None:
        return None
    return token.get_secret_value() if isinstance(token, SecretStr) else token


class CallHeaders(flight.ServerMiddleware):
    """Per-call middleware instance holding what the handlers need from the headers."""

    def __init__(
        self,
        job: str | None,
        node_proof: str | None = None,
        chunks: str | None = None,
        windows: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.job = job
        self.node_proof = node_proof
        self.chunks = chunks
        self.windows = windows


class BearerCheck:
    """Checks an ``authorization`` value against ``Bearer <token>`` in constant time
    (no token: everything passes). Flight calls and local reads use the same check."""

    def __init__(self, token: str | SecretStr | None) -> None:
        secret = _secret(token)
        self._expected = (_BEARER + secret).encode() if secret else None

    def __repr__(self) -> str:
        return f"BearerCheck(token={'<hidden>' if self._expected else None})"

    def __call__(self, given: str | bytes | None) -> None:
        """Raise FlightUnauthenticatedError unless ``given`` is the expected value."""
        if self._expected is None:
            return
        if given is None:
            given = b""
        raw = given.encode("utf-8", "replace") if isinstance(given, str) else bytes(given)
        if not hmac.compare_digest(raw, self._expected):
            raise flight.FlightUnauthenticatedError(
                "missing or wrong bearer token: send 'authorization: Bearer <token>'"
            )


def bearer_value(token: str | SecretStr | None) -> str | None:
    """Return the ``authorization`` value for ``token`` (None without one)."""
    secret = _secret(token)
    return _BEARER + secret if secret else None


class BearerAuthFactory(flight.ServerMiddlewareFactory):
    """Refuses calls without the right bearer token; records the ``x-icefeed-job`` header."""

    def __init__(self, token: str | SecretStr | None) -> None:
        super().__init__()
        self._check = BearerCheck(token)

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> CallHeaders:
        """Check the token (if any) and return the call's :class:`CallHeaders`."""
        given = headers.get(AUTH_HEADER) or []
        self._check(given[0] if len(given) == 1 else None)
        return CallHeaders(
            _header(headers, JOB_HEADER),
            _header(headers, NODE_PROOF_HEADER),
            _header(headers, CHUNKS_HEADER),
            _header(headers, WINDOWS_HEADER),
            _header(headers, HOST_HEADER),
        )


def _header(headers: dict[str, list[Any]], name: str) -> str | None:
    values = headers.get(name) or []
    value = values[0] if values else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def server_middleware(token: str | SecretStr | None) -> dict[str, flight.ServerMiddlewareFactory]:
    """Return the ``middleware=`` dict for a Flight server guarded by ``token`` (None = open)."""
    return {MIDDLEWARE_KEY: BearerAuthFactory(token)}


def caller_job(context: flight.ServerCallContext) -> str | None:
    """Return the ``x-icefeed-job`` header of the current call, or None if absent."""
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    return middleware.job if isinstance(middleware, CallHeaders) else None


def caller_node_proof(context: flight.ServerCallContext) -> str | None:
    """Return the ``x-icefeed-node-proof`` header of the current call, or None if absent."""
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    return middleware.node_proof if isinstance(middleware, CallHeaders) else None


def caller_chunking(context: flight.ServerCallContext) -> Chunking:
    """Return the ``x-icefeed-chunks`` hint of the current call (none: ``0,1``).

    Raises FeederError for a malformed header (see :mod:`feeder.protocol.chunking`).
    """
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    return parse_chunking(middleware.chunks if isinstance(middleware, CallHeaders) else None)


def caller_host(context: flight.ServerCallContext) -> str | None:
    """Return the ``x-icefeed-host`` header of the current call (None: none sent)."""
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    return middleware.host if isinstance(middleware, CallHeaders) else None


def caller_windows(context: flight.ServerCallContext) -> str | None:
    """Return the ``x-icefeed-windows`` header of the current call, unparsed (None: none)."""
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    return middleware.windows if isinstance(middleware, CallHeaders) else None


def call_options(
    token: str | SecretStr | None,
    job: str | None = None,
    timeout: float | None = None,
    *,
    node_proof: str | None = None,
    chunks: Chunking | None = None,
    windows: str | None = None,
    host: str | None = None,
) -> flight.FlightCallOptions:
    """Return ``FlightCallOptions`` carrying the bearer token, the job header, a data node's
    proof for a node-only call (see :mod:`feeder.protocol.node_auth`), a ``do_get``'s chunking
    hint (see :mod:`feeder.protocol.chunking`) and a timeout."""
    headers: list[tuple[bytes, bytes]] = []
    bearer = bearer_value(token)
    if bearer:
        headers.append((AUTH_HEADER.encode(), bearer.encode()))
    if job is not None:
        headers.append((JOB_HEADER.encode(), job.encode()))
    if node_proof is not None:
        headers.append((NODE_PROOF_HEADER.encode(), node_proof.encode("ascii")))
    if chunks is not None:
        headers.append((CHUNKS_HEADER.encode(), chunks.header_value().encode("ascii")))
    if windows is not None:
        headers.append((WINDOWS_HEADER.encode(), windows.encode("ascii")))
    if host is not None:
        headers.append((HOST_HEADER.encode(), host.encode("ascii")))
    return flight.FlightCallOptions(headers=headers, timeout=timeout)


def scheme(tls: TLSConfig | None) -> str:
    """Return the gRPC URI scheme: ``grpc+tls`` with TLS, else ``grpc``."""
    return "grpc+tls" if tls is not None else "grpc"


def location_uri(host: str, port: int, tls: TLSConfig | None) -> str:
    """Return ``grpc://host:port`` or ``grpc+tls://host:port`` (IPv6 hosts bracketed)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme(tls)}://{host}:{port}"


def server_tls_kwargs(tls: TLSConfig | None) -> dict[str, Any]:
    """Return the ``FlightServerBase`` keyword arguments for ``tls`` (empty without TLS)."""
    if tls is None:
        return {}
    return tls.server_kwargs()


def connect(location: str, *, tls: TLSConfig | None = None) -> flight.FlightClient:
    """Open a ``FlightClient`` to ``location``, trusting ``tls``'s roots for ``grpc+tls``.

    With mutual TLS it presents its client certificate, and it checks ``server_name``
    when set. The client counts as a live gRPC user (:mod:`feeder.protocol.fork_guard`)
    until it is dropped.
    """
    kwargs: dict[str, Any] = {}
    if location.startswith("grpc+tls://"):
        if tls is None:
            log.info("connecting to %s with the system trust store", location)
        else:
            kwargs.update(tls.client_kwargs())
    client = flight.FlightClient(location, **kwargs)
    fork_guard.register(client, f"Flight client of {location}")
    return client
