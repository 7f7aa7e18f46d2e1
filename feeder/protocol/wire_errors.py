"""Errors on the wire: a Flight error class, a message and a code, never a traceback.

pyarrow sends any Python exception a Flight handler raises — other than a
``FlightError`` — with its formatted traceback (file paths included) in the
message. So the coordinator and the data nodes answer every refusal with a
``FlightError`` built here: the message says what was wrong and what to do,
``extra_info`` carries ``{"code": ...}`` (and ``"error_id"`` for an internal
error, whose traceback only the server's log holds). Clients read the code with
:func:`error_code`. Codes and classes: PROTOCOL.md, *Errors*.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
from typing import Any

import pyarrow.flight as flight

from jobs.errors import AuthError, FeederError, LimitError, RestartedError, SpecError

MAX_MESSAGE_CHARS = 1000


class ErrorCode(enum.Enum):
    """What kind of refusal an error is (``extra_info["code"]`` on the wire)."""

    INVALID_ARGUMENT = "invalid_argument"  # a bad request: fix it, do not retry
    UNAUTHENTICATED = "unauthenticated"  # no or a bad token, ticket or node proof
    UNAUTHORIZED = "unauthorized"  # a valid ticket of another job or snapshot
    UNAVAILABLE = "unavailable"  # alive but not now (the message ends in "; retry")
    RESTARTED = "restarted"  # the feeder was restarted: its tickets and leases are gone
    LIMIT = "limit"  # a coordinator limit was reached (docs/feeder.md, *Limits*)
    FAILED = "failed"  # the request was valid but could not be served
    INTERNAL = "internal"  # a bug or an I/O failure: the server logged it under error_id
    UNIMPLEMENTED = "unimplemented"  # a Flight call this server does not serve


_CLASSES: dict[ErrorCode, type[flight.FlightError]] = {
    ErrorCode.INVALID_ARGUMENT: flight.FlightServerError,
    ErrorCode.UNAUTHENTICATED: flight.FlightUnauthenticatedError,
    ErrorCode.UNAUTHORIZED: flight.FlightUnauthorizedError,
    ErrorCode.UNAVAILABLE: flight.FlightUnavailableError,
    ErrorCode.RESTARTED: flight.FlightUnauthenticatedError,
    ErrorCode.LIMIT: flight.FlightServerError,
    ErrorCode.FAILED: flight.FlightServerError,
    ErrorCode.INTERNAL: flight.FlightInternalError,
    ErrorCode.UNIMPLEMENTED: flight.FlightServerError,
}


def wire_error(code: ErrorCode, message: str, **extra: str) -> flight.FlightError:
    """Return the Flight error to raise for ``code`` (message capped, code in extra_info).

    Args:
        code: what kind of refusal.
        message: what was wrong and what to do (no path, no traceback).
        extra: more string fields for ``extra_info`` (e.g. ``error_id``).

    Returns:
        A FlightError of the class PROTOCOL.md names for ``code``.
    """
    info = json.dumps({"code": code.value, **extra}, separators=(",", ":")).encode()
    return _CLASSES[code](message[:MAX_MESSAGE_CHARS], extra_info=info)


def _class_code(exc: flight.FlightError) -> ErrorCode:
    for code in (
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.UNAVAILABLE,
        ErrorCode.INTERNAL,
    ):
        if type(exc) is _CLASSES[code]:
            return code
    return ErrorCode.FAILED


def to_wire(exc: BaseException, what: str, log: logging.Logger) -> flight.FlightError:
    """Translate any exception a handler raised into the Flight error to send.

    Known refusals keep their message; anything else is logged here with its
    traceback under a fresh error id, and the client gets only that id.

    Args:
        exc: what the handler raised.
        what: the call, for the message and the log (``"lease"``, ``"do_get"``).
        log: the server's logger.

    Returns:
        The error to raise (``raise ... from None``).
    """
    if isinstance(exc, flight.FlightError):
        if error_code(exc) is not None:
            return exc
        return wire_error(_class_code(exc), _clean(exc))
    if isinstance(exc, RestartedError):
        return wire_error(ErrorCode.RESTARTED, str(exc))
    if isinstance(exc, AuthError):
        return wire_error(ErrorCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, LimitError):
        return wire_error(ErrorCode.LIMIT, f"{what}: {exc}")
    if isinstance(exc, SpecError | ValueError):
        return wire_error(ErrorCode.INVALID_ARGUMENT, f"{what}: {exc}")
    if isinstance(exc, FeederError):
        return wire_error(ErrorCode.FAILED, f"{what}: {exc}")
    error_id = secrets.token_hex(6)
    log.error("%s failed with an internal error, error id %s", what, error_id, exc_info=exc)
    kind = "a file or storage error" if isinstance(exc, OSError) else "an internal error"
    return wire_error(
        ErrorCode.INTERNAL,
        f"{what} failed with {kind} (error id {error_id}); the server's log has the "
        "details under that id",
        error_id=error_id,
    )


def _clean(exc: BaseException) -> str:
    return str(exc).split(". Detail:")[0].strip()


def error_code(exc: BaseException) -> ErrorCode | None:
    """Return the code of a Flight error sent by an icefeed server (None: no code).

    Args:
        exc: an exception a Flight call raised.

    Returns:
        Its code, or None for an error without one (e.g. from an older server).
    """
    info: Any = getattr(exc, "extra_info", None)
    if not info:
        return None
    try:
        value = json.loads(bytes(info)).get("code")
        return ErrorCode(value)
    except (ValueError, AttributeError, TypeError):
        return None


class UnservedCalls:
    """Mixin for a Flight server: the calls it does not override are refused with a code.

    (pyarrow's defaults raise NotImplementedError, which goes out with a traceback.)
    Put it before ``flight.FlightServerBase`` in the bases.
    """

    def _unserved(self, call: str) -> flight.FlightError:
        return wire_error(
            ErrorCode.UNIMPLEMENTED,
            f"{call} is not served here; see PROTOCOL.md for the calls this server answers",
        )

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Any:
        """Refuse ``list_flights`` (code ``unimplemented``)."""
        raise self._unserved("list_flights")

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Refuse ``get_flight_info`` (code ``unimplemented``)."""
        raise self._unserved("get_flight_info")

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        """Refuse ``get_schema`` (code ``unimplemented``)."""
        raise self._unserved("get_schema")

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Refuse ``do_put`` (code ``unimplemented``)."""
        raise self._unserved("do_put")

    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        """Refuse ``do_exchange`` (code ``unimplemented``)."""
        raise self._unserved("do_exchange")

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Any:
        """Refuse every action (code ``unimplemented``)."""
        raise self._unserved(f"action {str(action.type)[:64]!r}")
