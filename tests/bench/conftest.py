"""Benchmarks: write what ``tests.bench.recorder`` collected when the session ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bench import recorder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write bench-results/results.{json,md} (``$ICEFEED_BENCH_DIR`` overrides the folder)."""
    if not recorder.RESULTS:
        return
    out = Path(os.environ.get("ICEFEED_BENCH_DIR", Path(session.config.rootpath) / "bench-results"))
    path = recorder.write_results(out)
    print(f"\n[bench] results written to {path} and {path.with_suffix('.md')}")
