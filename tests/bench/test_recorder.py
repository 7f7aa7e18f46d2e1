"""tests.bench.recorder: the shared results format (runs in the normal suite, not a benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench import recorder


def test_results_have_rates_and_ratios_against_the_baseline(tmp_path: Path) -> None:
    results: list[dict] = []
    saved = recorder.RESULTS[:]
    try:
        recorder.RESULTS.clear()
        recorder.record("w", "ours", rows=1000, seconds=2.0, nbytes=4_000_000)
        recorder.record("w", "spark", rows=1000, seconds=1.0, nbytes=4_000_000, baseline=True)
        recorder.record("w", "note", ratio=0.5)
        recorder.record("other", "a", rows=10, seconds=1.0)
        results = recorder.RESULTS[:]
    finally:
        recorder.RESULTS[:] = saved
    path = recorder.write_results(tmp_path, results)
    data = json.loads(path.read_text())
    assert data["machine"]["nproc"] >= 1 and data["date"]
    by_case = {r["case"]: r for r in data["results"]}
    assert by_case["ours"]["rows_per_s"] == 500
    assert by_case["ours"]["mb_per_s"] == 2.0
    assert by_case["ours"]["ratio_to_baseline"] == 0.5
    assert by_case["spark"]["ratio_to_baseline"] == 1.0
    assert by_case["note"]["ratio_to_baseline"] is None
    assert by_case["a"]["baseline_case"] == "a"  # first timed case when none is marked
    md = (tmp_path / "results.md").read_text()
    assert "## w" in md and "## other" in md
    assert "| ours | 1,000 | 2.000 | 500 | 2.0 | 0.50 |" in md
