"""What one feeder session serves: a pinned snapshot of a table, projected and filtered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from feeder.protocol.slice_plan import SlicePlan
from jobs.errors import SpecError


@dataclass(frozen=True, kw_only=True)
class ServedSnapshot:
    """A pinned snapshot of ``table``, its projection, filter, schema and slice plans.

    ``io_properties`` (FileIO settings, possibly credentials) stay out of the ``repr``.
    """

    table: str
    snapshot_id: int | None
    metadata_location: str
    io_properties: Mapping[str, str] = field(repr=False)
    row_filter: str | None
    columns: tuple[str, ...] | None
    schema: pa.Schema
    plans: tuple[SlicePlan, ...]

    def project(self, columns: tuple[str, ...] | None) -> pa.Schema:
        """Return the schema of a job reading ``columns`` (None: all).

        Raises:
            SpecError: a column this feeder does not serve.
        """
        if columns is None:
            return self.schema
        unknown = [c for c in columns if c not in self.schema.names]
        if unknown:
            raise SpecError(
                f"columns: unknown column(s) {unknown}; this feeder serves {self.schema.names}"
            )
        return pa.schema([self.schema.field(c) for c in columns])
