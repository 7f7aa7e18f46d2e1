"""Fixtures for the writer tests: what files a table has on disk vs. in its snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyiceberg.table import Table


def _local(path: str) -> str:
    return str(Path(path.removeprefix("file://").removeprefix("file:")))


@pytest.fixture()
def disk_files() -> Callable[[Table], set[str]]:
    """Return a function listing every Parquet file under a local table's data folder."""

    def files(table: Table) -> set[str]:
        data = Path(_local(table.metadata.location)) / "data"
        return {str(p) for p in data.rglob("*.parquet")} if data.exists() else set()

    return files


@pytest.fixture()
def snapshot_files() -> Callable[[Table], set[str]]:
    """Return a function listing the data files the table's current snapshot references."""

    def files(table: Table) -> set[str]:
        table.refresh()
        if table.current_snapshot() is None:
            return set()
        return {_local(task.file.file_path) for task in table.scan().plan_files()}

    return files
