"""``make demo`` (examples.flights_demo.run): the whole demo on a sample of the flights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from examples.flights_demo.config import DemoConfig
from examples.flights_demo.run import run_demo


def _snapshots(table: str) -> list[int]:
    from jobs.catalog import load_catalog

    return [s.snapshot_id for s in load_catalog().load_table(table).snapshots()]


@pytest.mark.spark
@pytest.mark.slow
def test_demo_cleans_feeds_trains_and_reruns_idempotently(
    spark, icefeed_home: Path, tmp_path: Path
):
    out = tmp_path / "demo-output"
    screen = io.StringIO()
    config = DemoConfig(run_id="demo-test-1", epochs=2, output=out, sample_every=20)
    report = run_demo(config, spark=spark, console=Console(file=screen, width=120))

    # The files a newcomer opens.
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    readme = (out / "README.md").read_text()
    assert "demo-test-1" in readme and "loss.png" in readme

    # Counts reconcile, and the table holds exactly the rows written.
    clean = saved["clean"]
    assert clean["rows_in"] == clean["rows_written"] + clean["rows_rejected"] > 10_000
    assert sum(clean["rejects_by_reason"].values()) == clean["rows_rejected"]
    assert saved["feeder"]["rows"] == clean["rows_written"]
    assert saved["feeder"]["nodes"] == 2
    assert {"train", "eval", "throughput"} <= set(saved["feeder"]["jobs"])

    # Training happened, on held-out days that were never trained on.
    assert [e["epoch"] for e in saved["epochs"]] == [0, 1]
    for epoch in saved["epochs"]:
        assert 0 < epoch["train_rows"] < epoch["rows_read"] <= clean["rows_written"]
        assert 0.0 < epoch["val_loss"] < 1.0 and 0.5 < epoch["val_auc"] <= 1.0
    assert 0 < saved["model"]["validation_rows"] < clean["rows_written"] // 4
    assert saved["feeder"]["read_rows_per_second"] > 0
    assert {"clean", "feeder_start", "train", "evaluate", "total"} <= set(saved["seconds"])
    assert "icefeed demo" in screen.getvalue() and str(out.resolve()) in screen.getvalue()

    # Same run id: nothing written, the same snapshot served.
    before = _snapshots(report.table)
    again = run_demo(
        DemoConfig(run_id="demo-test-1", epochs=1, output=out, sample_every=20),
        spark=spark,
        console=Console(file=io.StringIO()),
    )
    assert again.already_committed and again.snapshot_id == report.snapshot_id
    assert _snapshots(report.table) == before
    assert again.feeder["rows"] == clean["rows_written"]

    # A new run id: a new snapshot with the same rows (overwrite, no duplicates).
    fresh = run_demo(
        DemoConfig(run_id="demo-test-2", epochs=1, output=out, sample_every=20),
        spark=spark,
        console=Console(file=io.StringIO()),
    )
    assert not fresh.already_committed and fresh.snapshot_id not in before
    assert _snapshots(report.table) == [*before, fresh.snapshot_id]
    assert fresh.feeder["rows"] == clean["rows_written"]
