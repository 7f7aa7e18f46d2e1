"""Small real Iceberg tables for the feeder's node-side tests (embedded catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


def sample_arrow(n: int, *, start: int = 0) -> pa.Table:
    """``n`` rows: id (unique, from ``start``), x, name, cat."""
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "x": pa.array(ids * 0.5, pa.float64()),
            "name": pa.array([f"n{i}" for i in ids], pa.string()),
            "cat": pa.array((ids % 7).astype(np.int32), pa.int32()),
        }
    )


def make_table(
    catalog,
    name: str = "test.feed",
    *,
    files: int = 2,
    rows_per_file: int = 3000,
    row_group_rows: int = 500,
):
    """Create ``name`` with ``files`` appends of ``rows_per_file`` rows, small row groups."""
    table = catalog.create_table(
        name,
        schema=sample_arrow(1).schema,
        properties={"write.parquet.row-group-limit": str(row_group_rows)},
    )
    for f in range(files):
        table.append(sample_arrow(rows_per_file, start=f * rows_per_file))
    return catalog.load_table(name)


def embedded_catalog(home: Path, name: str) -> Any:
    """A pyiceberg SqlCatalog ``name`` in ``home`` (SQLite, warehouse below it), namespace
    ``test`` created: the embedded catalog without ``ICEFEED_HOME``."""
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (home / "warehouse").mkdir(exist_ok=True)
    catalog = SqlCatalog(name, **embedded_catalog_properties(home))
    catalog.create_namespace("test")
    return catalog


def served_table(home: Path, name: str, *, rows: int, slices: int, slice_bytes: int) -> Any:
    """A fresh embedded catalog under ``home`` holding ``test.feed`` of ``rows`` rows in
    ``slices`` row groups (2 appends), resolved for a feeder: its ``ServedSnapshot``."""
    from feeder.coordinator.config import FeederConfig
    from feeder.coordinator.session import resolve

    catalog = embedded_catalog(home, name)
    make_table(catalog, files=2, rows_per_file=rows // 2, row_group_rows=rows // slices)
    served = resolve(FeederConfig(table="test.feed", slice_bytes=slice_bytes), catalog)
    assert len(served.plans) == slices
    return served
