"""Benchmarks: write what ``tests.bench.recorder`` collected when the session ends.

The chart and the docs section are drawn from that by ``python -m tests.bench.report``
(``make bench`` runs it after pytest, even when a benchmark failed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bench import recorder

#: Bench tests of this session that failed or were skipped, for results.json.
PROBLEMS: list[dict[str, str]] = []


def _reason(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or str(report.longrepr)
    return message.splitlines()[0][:200] if message else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each bench test that failed (in any phase) or was skipped."""
    if report.failed or report.skipped:
        outcome = "failed" if report.failed else "skipped"
        if report.failed and report.when != "call":
            outcome = f"error in {report.when}"
        PROBLEMS.append({"test": report.nodeid, "outcome": outcome, "reason": _reason(report)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write bench-results/results.{json,md} (``$ICEFEED_BENCH_DIR`` overrides the folder)."""
    if not recorder.RESULTS:
        return
    out = Path(os.environ.get("ICEFEED_BENCH_DIR", Path(session.config.rootpath) / "bench-results"))
    path = recorder.write_results(out, problems=PROBLEMS)
    print(f"\n[bench] results written to {path} and {path.with_suffix('.md')}")
    print(
        "[bench] chart, docs/benchmarks.md: python -m tests.bench.report --docs (make bench does)"
    )
