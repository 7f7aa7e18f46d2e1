"""icefeed clean, python -m jobs.clean: a report on success, one line and exit code on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from jobs.clean import cli

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

CSV = "id,name,score\n1,a,2\n2,b,x\n3,,4\n4,d,6\n"


def write_spec(tmp_path: Path, **overrides: Any) -> Path:
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    data: dict[str, Any] = {
        "source": {"path": str(source)},
        "table": "cli.events",
        "columns": {
            "id": {"type": "int", "required": True},
            "name": {"type": "string", "required": True},
            "score": {"type": "int"},
        },
    }
    data.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def icefeed_main(argv: Sequence[str]) -> int:
    from sparkapps.cli import main

    return main(["clean", *argv])


ENTRIES: dict[str, Callable[[Sequence[str]], int]] = {
    "icefeed clean": icefeed_main,
    "python -m jobs.clean": cli.main,
}


@pytest.mark.spark
@pytest.mark.slow
def test_module_entry_point_runs_the_job_and_prints_json(
    tmp_path: Path, icefeed_home: Path
) -> None:
    spec = write_spec(tmp_path)
    env = {
        **os.environ,
        "ICEFEED_HOME": str(icefeed_home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "ICEFEED_SPARK_MASTER": "local[1]",
    }
    command = [sys.executable, "-m", "jobs.clean", str(spec), "--run-id", "cli-1"]
    done = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert (report["rows_in"], report["rows_written"], report["rows_rejected"]) == (4, 2, 2)
    assert report["rejects_by_reason"] == {"cast:score": 1, "required:name": 1}
    assert report["run_id"] == "cli-1" and report["already_committed"] is False

    again = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already committed" in again.stdout and "cli.events" in again.stdout

    from jobs.catalog import load_catalog

    table = load_catalog().load_table("cli.events")
    assert table.scan().to_arrow().num_rows == 2
    assert len(table.snapshots()) == 1


@pytest.mark.spark
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_summary_table_in_process(
    entry: str,
    spark: SparkSession,
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = ENTRIES[entry]([str(write_spec(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("rows in", "rows written", "rows rejected", "cast:score", "required:name"):
        assert text in out
    assert catalog.load_table("cli.events").scan().to_arrow().num_rows == 2


def _unknown_key(tmp_path: Path) -> Path:
    return write_spec(tmp_path, colums={})


def _missing_source(tmp_path: Path) -> Path:
    return write_spec(tmp_path, source={"path": str(tmp_path / "absent" / "*.csv")})


def _over_threshold(tmp_path: Path) -> Path:
    return write_spec(tmp_path, max_reject_fraction=0.25)  # 2 of 4 rows rejected


def _failing_write(tmp_path: Path) -> Path:
    return write_spec(tmp_path, derive={"boom": "score div (score - score)"})


@pytest.mark.spark
@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize(
    ("make_spec", "code", "text"),
    [
        (_unknown_key, cli.EXIT_SPEC, "colums: unknown key"),
        (_missing_source, cli.EXIT_SPEC, "no file matches"),
        (_failing_write, cli.EXIT_COMMIT, "nothing was committed"),
        (_over_threshold, cli.EXIT_REJECTS, "> max_reject_fraction 25.00%"),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    entry: str,
    make_spec: Callable[[Path], Path],
    code: int,
    text: str,
    spark: SparkSession,
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ENTRIES[entry]([str(make_spec(tmp_path)), "--json"]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    # Spark may log its own lines to stderr; ours is exactly one line, the last.
    ours = [line for line in captured.err.splitlines() if line.startswith("icefeed clean:")]
    assert len(ours) == 1 and ours[0].startswith("icefeed clean: error: ")
    assert captured.err.strip().splitlines()[-1] == ours[0]
    assert text in ours[0]
    if code == cli.EXIT_REJECTS:  # over the threshold: neither table was created
        assert not catalog.table_exists("cli.events")
        assert not catalog.table_exists("cli.events__rejects")


def test_unreadable_spec_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main([str(tmp_path / "nope.yaml")]) == cli.EXIT_SPEC
    assert "cannot read spec" in capsys.readouterr().err
