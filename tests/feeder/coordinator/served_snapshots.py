"""Small ServedSnapshots for the coordinator's pure tests: a slice per (file, row groups)."""

from __future__ import annotations

import pyarrow as pa

from feeder.coordinator.served import ServedSnapshot
from feeder.protocol.slice_plan import SlicePlan

SCHEMA = pa.schema([("id", pa.int64())])

#: a data file's slice: (file path, row groups, has delete files)
File = tuple[str, tuple[int, ...], bool]


def served_snapshot(
    snapshot_id: int, files: list[File], schema: pa.Schema = SCHEMA
) -> ServedSnapshot:
    """Snapshot ``snapshot_id`` of table ``t``: one slice per entry of ``files``, numbered
    by position (as planning numbers them), 10 rows and 100 bytes each by estimate."""
    plans = tuple(
        SlicePlan(
            slice_id=i,
            file_path=path,
            row_groups=groups,
            estimated_rows=10,
            estimated_bytes=100,
            has_deletes=deletes,
        )
        for i, (path, groups, deletes) in enumerate(files)
    )
    return ServedSnapshot(
        table="t",
        snapshot_id=snapshot_id,
        metadata_location=f"/m{snapshot_id}.json",
        io_properties={},
        row_filter=None,
        columns=None,
        schema=schema,
        plans=plans,
    )
