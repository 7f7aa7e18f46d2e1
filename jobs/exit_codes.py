"""The exit codes of every ``icefeed`` command, and the error → code mapping they share.

One table for ``icefeed clean``, ``icefeed feeder``, ``icefeed sparkapp`` and
``icefeed sweep-orphans`` (README.md, "Exit codes", lists it):

====  ======================================================================
0     success
1     the work ran and failed (an application FAILED, spark-submit failed,
      ``sparkapp validate`` found problems, a feeder error)
2     bad input, nothing done: a spec, manifest, value or option is invalid
      (also argparse usage errors), or the cluster refused the request
3     the catalog or a write/commit failed; every table is as it was
4     a clean run went over its reject threshold; nothing was committed
130   interrupted (Ctrl-C)
====  ======================================================================
"""

from __future__ import annotations

import enum

from jobs.errors import (
    CatalogError,
    CommitError,
    ManifestError,
    RejectThresholdError,
    RunFailedError,
    SpecError,
)


class ExitCode(enum.IntEnum):
    """Process exit codes shared by every ``icefeed`` command."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    COMMIT = 3
    REJECTS = 4
    INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code for an error a command raised.

    Args:
        exc: The error (usually an :class:`~jobs.errors.IcefeedError`).

    Returns:
        The code from the table in this module's docstring; FAILED for anything unlisted.
    """
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, RunFailedError):
        return ExitCode.FAILED
    if isinstance(exc, RejectThresholdError):
        return ExitCode.REJECTS
    if isinstance(exc, SpecError | ManifestError):
        return ExitCode.BAD_INPUT
    if isinstance(exc, CommitError | CatalogError):
        return ExitCode.COMMIT
    return ExitCode.FAILED
