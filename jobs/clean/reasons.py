"""Why a row was rejected: one reason per row, the first rule it fails.

Rules are applied in this order (the order of :class:`RuleKind`), and within a
kind in the order the spec declares columns / checks:

1. ``cast:<column>``     the raw value is present but does not parse as the column's type
2. ``required:<column>`` a required column is null (missing, empty or the reader's null value)
3. ``range:<column>``    the typed value is below ``min`` or above ``max``
4. ``allowed:<column>``  the typed value is not one of ``allowed``
5. ``check:<name>``      the named Spark SQL check is not true (false or null)
6. ``duplicate``         another row with the same dedupe key was kept

Column names in reasons are the *source* names (before ``rename``).
"""

from __future__ import annotations

import enum


class RuleKind(enum.Enum):
    """The rule families, in the order they are applied."""

    CAST = "cast"
    REQUIRED = "required"
    RANGE = "range"
    ALLOWED = "allowed"
    CHECK = "check"
    DUPLICATE = "duplicate"


def reason(kind: RuleKind, subject: str | None = None) -> str:
    """Return the ``_reason`` string for a rule, e.g. ``cast:dep_time`` or ``duplicate``."""
    if kind is RuleKind.DUPLICATE:
        return str(kind.value)
    if not subject:
        raise ValueError(f"a {kind.value} reason needs a column or check name")
    return f"{kind.value}:{subject}"
