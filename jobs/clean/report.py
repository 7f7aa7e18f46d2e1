"""CleanReport: what one clean run read, wrote and rejected, JSON-able for ``--json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Snapshot-summary keys the clean job stores with its commit, so a re-run with
#: the same run id can return the original report without reading anything.
SUMMARY_PREFIX = "icefeed.clean."
REPORT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class CleanReport:
    """The outcome of :func:`jobs.clean.run`.

    Invariant (asserted by the job before it commits):
    ``rows_in == rows_written + rows_rejected == rows_written + sum(rejects_by_reason.values())``.
    ``already_committed`` is true when this run id had committed before and
    nothing was written this time.
    """

    rows_in: int
    rows_written: int
    rows_rejected: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    table: str
    rejects_table: str
    snapshot_id: int | None
    rejects_snapshot_id: int | None
    run_id: str
    seconds: float
    already_committed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (reasons sorted by count, then name)."""
        data = asdict(self)
        data["rejects_by_reason"] = dict(
            sorted(self.rejects_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        return data

    def to_json(self) -> str:
        """The report as one JSON document."""
        return json.dumps(self.to_dict(), indent=2)

    def summary_properties(self) -> dict[str, str]:
        """Snapshot-summary properties recording this run's counts (strings, as Iceberg wants)."""
        return {
            f"{SUMMARY_PREFIX}version": str(REPORT_VERSION),
            f"{SUMMARY_PREFIX}rows-in": str(self.rows_in),
            f"{SUMMARY_PREFIX}rows-written": str(self.rows_written),
            f"{SUMMARY_PREFIX}rows-rejected": str(self.rows_rejected),
            f"{SUMMARY_PREFIX}rejects-by-reason": json.dumps(
                self.rejects_by_reason, sort_keys=True, separators=(",", ":")
            ),
        }


def counts_from_summary(summary: dict[str, str]) -> tuple[int, int, int, dict[str, int]] | None:
    """Counts a clean commit stored in its snapshot summary, or None if it stored none."""
    try:
        return (
            int(summary[f"{SUMMARY_PREFIX}rows-in"]),
            int(summary[f"{SUMMARY_PREFIX}rows-written"]),
            int(summary[f"{SUMMARY_PREFIX}rows-rejected"]),
            {
                str(k): int(v)
                for k, v in json.loads(summary[f"{SUMMARY_PREFIX}rejects-by-reason"]).items()
            },
        )
    except (KeyError, ValueError):
        return None
