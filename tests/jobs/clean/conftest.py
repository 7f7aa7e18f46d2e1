"""Fixtures of the clean job's tests: one small raw source with a reject per rule family."""

from __future__ import annotations

from pathlib import Path

import pytest

#: One row per rejection reason (see test_job.EXPECTED_REASONS), three clean rows.
ROWS = [
    "1,ok,10,2024-01-05,a",
    "2,bad-cast,ten,2024-01-05,a",
    "3,,10,2024-01-05,a",
    "4,too-big,101,2024-01-05,b",
    "6,not-allowed,10,2024-01-05,c",
    "7,odd,11,2024-01-05,a",
    "8,dup-loser,20,2024-01-05,a",
    "8,dup-winner,20,2024-01-09,b",
    "9,ok2,30,2024-02-01,b",
]


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """A CSV of ROWS under ``tmp_path/raw``."""
    path = tmp_path / "raw" / "events.csv"
    path.parent.mkdir()
    path.write_text("\n".join(["id,name,score,day,grp", *ROWS]) + "\n")
    return path
