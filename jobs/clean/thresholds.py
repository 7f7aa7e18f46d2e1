"""Reject thresholds: when a clean run rejects too much, it commits nothing.

A spec may set ``max_reject_fraction`` (rejected rows / rows read) and a
``severity`` per rule. A rule is a reason (``check:positive_distance``,
``cast:dep_time``, ``duplicate``) or a whole family (``cast``, ``check`` …; see
:mod:`jobs.clean.reasons`); an exact reason wins over its family.

- ``fail``: any row this rule rejects fails the run.
- ``warn``: its rejects are quarantined and reported, and never fail the run
  (they do not count against ``max_reject_fraction``).
- not listed: its rejects count against ``max_reject_fraction`` (if set).

With neither set (the default), every run commits, as before.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Severity(str, enum.Enum):
    """What a rule's rejects do to a run."""

    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Breach:
    """One reason a run is over its threshold: the rules, their rejected rows and fraction."""

    rules: tuple[str, ...]
    rejected: int
    fraction: float
    limit: float | None  # None: a severity-fail rule (any reject fails)

    def __str__(self) -> str:
        rules = ", ".join(self.rules)
        if self.limit is None:
            return f"{rules} (severity fail) rejected {self.rejected} rows ({self.fraction:.2%})"
        return (
            f"rejected {self.rejected} rows ({self.fraction:.2%}) > max_reject_fraction "
            f"{self.limit:.2%}, by {rules}"
        )


def severity_of(reason: str, severities: Mapping[str, Severity]) -> Severity | None:
    """The severity of ``reason``: its exact entry, else its family's, else None."""
    if reason in severities:
        return severities[reason]
    return severities.get(reason.split(":", 1)[0])


def breaches(
    *,
    rows_in: int,
    rejects_by_reason: Mapping[str, int],
    severities: Mapping[str, Severity],
    max_reject_fraction: float | None,
) -> list[Breach]:
    """Return every way a run's counts break its thresholds (empty: the run may commit).

    Args:
        rows_in: Rows read.
        rejects_by_reason: Rejected rows per reason.
        severities: The spec's ``severity`` (reason or family → severity).
        max_reject_fraction: The spec's limit on counted rejects / rows_in (None: no limit).

    Returns:
        One Breach per severity-fail reason with rejects, then one for the
        fraction if it is over the limit; sorted, so the message is stable.
    """
    found: list[Breach] = []
    counted: dict[str, int] = {}
    total = max(rows_in, 1)
    for reason, count in sorted(rejects_by_reason.items()):
        if count <= 0:
            continue
        severity = severity_of(reason, severities)
        if severity is Severity.FAIL:
            found.append(
                Breach(rules=(reason,), rejected=count, fraction=count / total, limit=None)
            )
        elif severity is None:
            counted[reason] = count
    rejected = sum(counted.values())
    if max_reject_fraction is not None and rejected / total > max_reject_fraction:
        by_count = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))
        rules = tuple(f"{r} {c} ({c / total:.2%})" for r, c in by_count)
        found.append(
            Breach(
                rules=rules, rejected=rejected, fraction=rejected / total, limit=max_reject_fraction
            )
        )
    return found
