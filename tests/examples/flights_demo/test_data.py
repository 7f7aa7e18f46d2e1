"""examples.flights_demo.data: the flights are exported byte for byte, once, atomically."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from examples.flights_demo.data import (
    FLIGHTS_SPEC,
    _package_file,
    export_flights,
    flights_path,
    write_sample,
)
from jobs.clean.spec import CleanSpec
from jobs.errors import SpecError

ROOT = Path(__file__).resolve().parents[3]


def test_flights_export_is_the_packaged_csv(tmp_path: Path) -> None:
    target = tmp_path / "raw" / "flights.csv"
    assert export_flights(target) == target
    with zipfile.ZipFile(_package_file()) as zipped:
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
    export_flights(target)
    assert target.read_text() == "already here\n"


def test_a_directory_in_the_way_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "flights.csv").mkdir()
    with pytest.raises(SpecError, match="is a directory"):
        export_flights(tmp_path / "flights.csv")


def test_the_default_target_is_where_the_flights_spec_reads(icefeed_home: Path) -> None:
    expected = icefeed_home / "raw" / "nycflights13" / "flights.csv"
    assert flights_path() == expected == Path(CleanSpec.from_yaml(FLIGHTS_SPEC).source.path)
    assert export_flights() == expected and expected.is_file()


def test_a_spec_on_a_glob_or_uri_has_no_file_to_export_to(tmp_path: Path) -> None:
    text = FLIGHTS_SPEC.read_text().replace(
        "path: ${ICEFEED_HOME}/raw/nycflights13/flights.csv", "path: s3://bucket/flights/*.csv"
    )
    spec = tmp_path / "remote.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError, match="not a local file path"):
        flights_path(spec)


def test_sample_keeps_the_header_and_every_nth_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(10)))
    sample = write_sample(raw, tmp_path / "sample.csv", 4)
    assert sample.read_text() == "a,b\n0,x\n4,x\n8,x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.csv", "sample.csv"]


def test_the_command_exports_to_the_spec_path_and_prints_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ICEFEED_HOME": str(home)}
    argv = [sys.executable, "-m", "examples.flights_demo.data"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    target = home / "raw" / "nycflights13" / "flights.csv"
    assert done.stdout.strip() == str(target) and target.stat().st_size > 10_000_000
