"""A slice as the coordinator hands it to a data node: row groups of one data file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.errors import FeederError


@dataclass(frozen=True, kw_only=True)
class SlicePlan:
    """One slice: row groups ``row_groups`` of data file ``file_path`` (estimates from footers)."""

    slice_id: int
    file_path: str
    row_groups: tuple[int, ...]
    estimated_rows: int
    estimated_bytes: int
    has_deletes: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form sent from the coordinator to its data nodes."""
        return {
            "slice_id": self.slice_id,
            "file_path": self.file_path,
            "row_groups": list(self.row_groups),
            "estimated_rows": self.estimated_rows,
            "estimated_bytes": self.estimated_bytes,
            "has_deletes": self.has_deletes,
        }

    @classmethod
    def from_dict(cls, data: Any) -> SlicePlan:
        """Parse :meth:`to_dict`'s output; raises FeederError on a malformed plan."""
        try:
            groups = data["row_groups"]
            plan = cls(
                slice_id=data["slice_id"],
                file_path=data["file_path"],
                row_groups=tuple(groups),
                estimated_rows=data["estimated_rows"],
                estimated_bytes=data["estimated_bytes"],
                has_deletes=data["has_deletes"],
            )
        except (KeyError, TypeError) as exc:
            raise FeederError(f"malformed slice plan {data!r}: {exc}") from exc
        ints = (plan.slice_id, plan.estimated_rows, plan.estimated_bytes, *plan.row_groups)
        if (
            not isinstance(groups, list)
            or not isinstance(plan.file_path, str)
            or not isinstance(plan.has_deletes, bool)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ints)
        ):
            raise FeederError(f"malformed slice plan {data!r}")
        return plan
