"""jobs.clean.progress: the progress display sees running Spark stages and stops cleanly."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from jobs.clean.progress import SparkProgress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.mark.spark
def test_progress_tracks_a_running_stage_and_stops(spark: SparkSession, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release_path = str(release)

    def wait_for_release(rows: Iterable[int]) -> Iterator[int]:
        import os
        import time as wtime

        deadline = wtime.monotonic() + 120
        while not os.path.exists(release_path) and wtime.monotonic() < deadline:
            wtime.sleep(0.05)
        yield sum(1 for _ in rows)

    results: list[list[int]] = []
    job = threading.Thread(
        target=lambda: results.append(
            spark.sparkContext.parallelize(range(10), 2).mapPartitions(wait_for_release).collect()
        )
    )
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with SparkProgress(spark.sparkContext, console=console, interval=0.05) as progress:
        job.start()
        deadline = time.monotonic() + 120
        while not progress.stages_seen and time.monotonic() < deadline:
            time.sleep(0.05)
        release.touch()
        job.join(timeout=120)
    assert results == [[5, 5]]
    assert 2 in progress.stages_seen.values()  # the stage with its 2 tasks was shown
    assert not progress._thread.is_alive()


def test_disabled_progress_starts_no_thread() -> None:
    class FakeSparkContext:  # a fake: no Spark needed to show nothing
        def statusTracker(self) -> object:
            return object()

    with SparkProgress(FakeSparkContext(), enabled=False) as progress:  # type: ignore[arg-type]
        pass
    assert not progress._thread.is_alive() and progress.stages_seen == {}
