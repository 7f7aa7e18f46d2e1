"""Cut a pinned Iceberg scan into slices: contiguous row-group ranges of one data file.

Planning uses pyiceberg's scan planning (projection, row-filter pruning,
position delete files) plus the Parquet footers for row-group sizes. A data
file that carries delete files is one slice, so its deletes are applied in one
piece when it is materialised; its planned rows are the file's, the served rows
are what remains (the registry counts the rows nodes cached). A snapshot with
equality delete files is a SpecError (:mod:`jobs.delete_files`). Slice ids are
positions in plan order (files sorted by path, then row groups), so every
planner of the same scan agrees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from feeder.protocol.slice_plan import SlicePlan
from jobs.delete_files import equality_deletes_error
from jobs.parquet_footers import read_footer, row_group_sizes

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


def cut_row_groups(sizes: Sequence[int], target_bytes: int) -> list[tuple[int, ...]]:
    """Cut row groups ``0..len(sizes)-1`` into contiguous runs of about ``target_bytes``.

    Greedy: a run grows while it stays within ``target_bytes``; a row group
    bigger than the target is a run of its own. Every run is non-empty, runs
    cover every row group once, in order. Raises ValueError for a target < 1.
    """
    if target_bytes < 1:
        raise ValueError(f"target_bytes {target_bytes} must be >= 1")
    runs: list[tuple[int, ...]] = []
    current: list[int] = []
    acc = 0
    for i, size in enumerate(sizes):
        if current and acc + size > target_bytes:
            runs.append(tuple(current))
            current, acc = [], 0
        current.append(i)
        acc += size
    if current:
        runs.append(tuple(current))
    return runs


def plan_slices(
    table: Table,
    *,
    snapshot_id: int | None,
    row_filter: str | None,
    columns: Sequence[str] | None,
    slice_bytes: int,
) -> list[SlicePlan]:
    """Plan the slices of ``table`` at ``snapshot_id`` (None: current) for a projection/filter.

    Reads only manifests and Parquet footers (:mod:`jobs.parquet_footers`).

    Args:
        table: The Iceberg table.
        snapshot_id: The pinned snapshot; None for the current one.
        row_filter: An Iceberg row filter expression; None or empty for all rows.
        columns: The projected columns; None or empty for all.
        slice_bytes: Target uncompressed bytes of the projected columns per slice.

    Returns:
        The slices in plan order (empty for an empty table).

    Raises:
        SpecError: the snapshot has equality delete files (pyiceberg cannot apply them).
        Whatever pyiceberg raises for an unknown column, a bad filter or a missing
        snapshot (callers turn it into a SpecError at the edge).
    """
    from pyiceberg.expressions import AlwaysTrue

    scan = table.scan(
        row_filter=row_filter if row_filter else AlwaysTrue(),
        selected_fields=tuple(columns) if columns else ("*",),
        snapshot_id=snapshot_id,
    )
    projected_ids = set(scan.projection().field_ids)
    try:
        tasks = sorted(scan.plan_files(), key=lambda t: t.file.file_path)
    except ValueError as exc:  # pyiceberg's way of refusing equality deletes
        error = equality_deletes_error(table, snapshot_id)
        if error is None:
            raise
        raise error from exc
    plans: list[SlicePlan] = []
    for task in tasks:
        path = task.file.file_path
        groups = row_group_sizes(read_footer(table.io, path), projected_ids)
        if not groups:
            continue
        runs = (
            [tuple(range(len(groups)))]
            if task.delete_files
            else cut_row_groups([size for _rows, size in groups], slice_bytes)
        )
        for run in runs:
            plans.append(
                SlicePlan(
                    slice_id=len(plans),
                    file_path=path,
                    row_groups=run,
                    estimated_rows=sum(groups[i][0] for i in run),
                    estimated_bytes=sum(groups[i][1] for i in run),
                    has_deletes=bool(task.delete_files),
                )
            )
    log.info("planned %d slices from %d data files", len(plans), len(tasks))
    return plans
