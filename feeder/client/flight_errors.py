"""How the client reads Flight errors: which ones to retry, and their messages without detail."""

from __future__ import annotations

import pyarrow.flight as flight

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
