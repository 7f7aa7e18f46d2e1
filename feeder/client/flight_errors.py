"""How the client reads Flight errors: which ones to retry, and their messages without detail."""

from __future__ import annotations

import pyarrow.flight as flight

from feeder.protocol.wire_errors import ErrorCode, error_code
from jobs.errors import (
    AuthError,
    FeederError,
    IcefeedError,
    LimitError,
    RestartedError,
    SpecError,
)

#: Errors after which a call is retried (a coordinator call) or a read moves on to
#: another location (a data-node read).
RETRIABLE = (
    flight.FlightUnavailableError,
    flight.FlightInternalError,
    flight.FlightTimedOutError,
    flight.FlightCancelledError,
    flight.FlightServerError,
    OSError,
)

#: How the coordinator says "alive, but not now" (still caching): retried up to ready_timeout.
RETRY_MARK = "; retry"

#: Errors that mean the token was refused.
REFUSED = (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)


def clean(exc: BaseException) -> str:
    """Return a Flight error's message without the server-side traceback detail.

    Args:
        exc: any exception; Flight errors carry ``". Detail: ..."`` after the message.

    Returns:
        The message up to that detail, stripped.
    """
    return str(exc).split(". Detail:")[0].strip()


def final_error(exc: BaseException, who: str, *, internal_is_final: bool) -> IcefeedError | None:
    """Return the icefeed error a coded refusal from an icefeed server means, if it is final.

    Servers send every refusal with a code (:mod:`feeder.protocol.wire_errors`);
    a bad request, a limit or a restarted feeder is final (retrying or failing over
    cannot help), while ``unavailable`` (not now) and, from a data node, ``internal``
    and ``failed`` are not: the caller retries or reads from another node.

    Args:
        exc: the exception a Flight call raised.
        who: who refused, for the message (``"feeder at grpc://..: lease"``).
        internal_is_final: whether ``internal``/``failed`` end the call (coordinator
            calls) or let it fail over (data-node reads).

    Returns:
        The error to raise, or None when the caller's own handling applies.
    """
    code = error_code(exc)
    if code is None:
        return None
    message = clean(exc)
    if code is ErrorCode.INVALID_ARGUMENT:
        return SpecError(message)
    if code is ErrorCode.LIMIT:
        return LimitError(message)
    if code is ErrorCode.RESTARTED:
        return RestartedError(f"{who}: {message}")
    if code in (ErrorCode.UNAUTHENTICATED, ErrorCode.UNAUTHORIZED):
        return AuthError(f"{who} refused the call: {message}")
    if code is ErrorCode.UNIMPLEMENTED or (
        internal_is_final and code in (ErrorCode.INTERNAL, ErrorCode.FAILED)
    ):
        return FeederError(f"{who} failed: {message}")
    return None
