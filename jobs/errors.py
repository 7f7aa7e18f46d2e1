"""The one exception hierarchy of icefeed.

Every error icefeed raises on purpose derives from :class:`IcefeedError`; the
subclasses say which layer refused and why. Messages state what was wrong and
what to do about it, and never contain secrets.
"""

from __future__ import annotations


class IcefeedError(Exception):
    """Root of every error icefeed raises on purpose."""


class SpecError(IcefeedError):
    """A user-written spec or option is invalid (raised before any work starts)."""


class CommitError(IcefeedError):
    """Writing to or committing an Iceberg table failed; the table is unchanged."""


class RejectThresholdError(IcefeedError):
    """A clean run rejected more rows than its spec allows; nothing was committed."""


class RunFailedError(IcefeedError):
    """The work started and failed (e.g. a SparkApplication ended FAILED)."""


class CatalogError(IcefeedError):
    """The Iceberg catalog could not be loaded or a table could not be found."""


class FeederError(IcefeedError):
    """The feeder (coordinator, data node or client) could not do what was asked."""


class AuthError(FeederError):
    """A Flight call was refused for a missing or wrong token or ticket signature."""


class RestartedError(AuthError):
    """A ticket or lease of an earlier session of a feeder that was restarted since."""


class LimitError(FeederError):
    """The feeder refused a request because one of its limits was reached."""


class ManifestError(IcefeedError):
    """A SparkApplication manifest or Helm values are invalid or could not be applied."""


class MissingExtraError(IcefeedError):
    """An optional dependency is not installed; the message names the extra."""
