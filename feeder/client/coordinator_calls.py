"""Calls to the coordinator, retried while it is unreachable or still caching.

One connection per client, reopened after a transport error. A refused token
raises AuthError, a bad request SpecError, a server-side failure FeederError;
transport errors are retried for ``timeout`` seconds — for ``restart_seconds``
once the coordinator has answered (a driver restart: a feeder with a journal comes
back on the same endpoint and continues the epoch) — and the coordinator's
"alive, but not ready" answer for ``ready_timeout`` seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.client.flight_errors import REFUSED, RETRIABLE, RETRY_MARK, clean, final_error
from feeder.protocol.auth import call_options, connect
from feeder.protocol.chunking import Chunking
from feeder.protocol.config import TLSConfig
from feeder.protocol.wire_errors import error_code
from jobs.errors import AuthError, FeederError, SpecError

T = TypeVar("T")


#: Seconds a client waits, by default, for a feeder that is still caching.
READY_TIMEOUT = 600.0
#: Seconds a client retries, by default, a coordinator that answered before and went away.
RESTART_SECONDS = 60.0


class CoordinatorCalls:
    """Runs one job's calls against the coordinator at ``endpoint``.

    Args:
        endpoint: ``grpc://host:port`` or ``grpc+tls://host:port``.
        job: the job name sent with every call.
        token: the bearer token (None: no token).
        tls: TLS settings for ``grpc+tls://``.
        timeout: bounds each call and how long a coordinator never reached is retried.
        ready_timeout: how long a coordinator that is still caching is waited for.
        restart_seconds: how long a coordinator that answered before is retried while
            unreachable (it is restarting).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        job: str,
        token: SecretStr | None,
        tls: TLSConfig | None,
        timeout: float,
        ready_timeout: float,
        restart_seconds: float = RESTART_SECONDS,
        host: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.job = job
        self.host = host
        self.timeout = timeout
        self.ready_timeout = ready_timeout
        self.restart_seconds = restart_seconds
        self._answered = False  # whether the coordinator ever answered this client
        self._token = token
        self._tls = tls
        self._lock = threading.Lock()
        self._client: flight.FlightClient | None = None

    @property
    def token(self) -> SecretStr | None:
        """The bearer token this client sends (data nodes' local sockets check it too)."""
        return self._token

    def options(
        self, timeout: float | None, chunks: Chunking | None = None, windows: str | None = None
    ) -> flight.FlightCallOptions:
        """Return the call options (token, job, optional chunking hint and window header)
        for one call."""
        return call_options(
            self._token, self.job, timeout, chunks=chunks, windows=windows, host=self.host
        )

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connection(self) -> flight.FlightClient:
        with self._lock:
            if self._client is None:
                self._client = connect(self.endpoint, tls=self._tls)
            return self._client

    def call(self, what: str, fn: Callable[[flight.FlightClient, Any], T]) -> T:
        """Run ``fn(client, options)``, retrying while the coordinator is unreachable or not ready.

        Args:
            what: the call's name, for error messages.
            fn: the call itself.

        Returns:
            What ``fn`` returns.

        Raises:
            AuthError: the token was refused.
            SpecError: the coordinator rejected the request as invalid.
            FeederError: the call failed on the server, the coordinator was unreachable
                for ``timeout`` seconds (``restart_seconds`` once it had answered), or
                not ready for ``ready_timeout`` seconds.
        """
        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                try:
                    result = fn(self._connection(), self.options(self.timeout))
                    self._answered = True
                    return result
                except flight.FlightError as exc:
                    self._answered = self._answered or error_code(exc) is not None
                    who = f"feeder at {self.endpoint}: {what}"
                    final = final_error(exc, who, internal_is_final=True)
                    if final is not None:
                        raise final from exc
                    raise
            except REFUSED as exc:
                raise AuthError(f"feeder at {self.endpoint} refused {what}: {clean(exc)}") from exc
            except pa.ArrowInvalid as exc:
                raise SpecError(clean(exc)) from exc
            except (flight.FlightServerError, pa.ArrowKeyError, pa.ArrowNotImplementedError) as exc:
                raise FeederError(
                    f"feeder at {self.endpoint}: {what} failed: {clean(exc)}"
                ) from exc
            except RETRIABLE as exc:
                waited = time.monotonic() - start
                alive = RETRY_MARK in str(exc)
                if alive and waited > self.ready_timeout:
                    raise FeederError(
                        f"feeder at {self.endpoint} still not ready after {waited:.0f}s: "
                        f"{clean(exc)}"
                    ) from exc
                limit = self.restart_seconds if self._answered else self.timeout
                if not alive and waited > limit:
                    hint = (
                        "it did not come back within restart_seconds"
                        if self._answered
                        else "is the feeder running?"
                    )
                    raise FeederError(
                        f"coordinator at {self.endpoint} unreachable for {waited:.0f}s "
                        f"({what}): {clean(exc)}; {hint}"
                    ) from exc
                if not alive:
                    with self._lock:
                        self._client = None
            time.sleep(delay)  # retry backoff, not synchronisation
            delay = min(delay * 2, 1.0)

    def action(self, name: str, body: Any = None) -> Any:
        """Run the ``name`` action with a JSON ``body``; return its decoded JSON answer.

        Raises:
            AuthError, SpecError, FeederError: as :meth:`call`.
        """
        payload = json.dumps(body if body is not None else {}).encode()

        def run(client: flight.FlightClient, options: Any) -> Any:
            results = list(client.do_action(flight.Action(name, payload), options))
            return json.loads(results[0].body.to_pybytes()) if results else {}

        return self.call(name, run)
