"""A rich progress display fed by Spark's status tracker, polled from a daemon thread."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

if TYPE_CHECKING:
    from pyspark import SparkContext

log = logging.getLogger(__name__)


class SparkProgress:
    """Show one bar per active Spark stage while the ``with`` block runs.

    A thread polls ``sparkContext.statusTracker()`` every ``interval`` seconds;
    leaving the block stops it (bounded join) and removes the display.
    ``stages_seen`` records each stage id observed with its task count.
    """

    def __init__(
        self,
        spark_context: SparkContext,
        *,
        console: Console | None = None,
        interval: float = 0.2,
        enabled: bool = True,
    ) -> None:
        self._tracker = spark_context.statusTracker()
        self._interval = interval
        self._enabled = enabled
        self._stop = threading.Event()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._bars: dict[int, TaskID] = {}
        self._thread = threading.Thread(target=self._poll, name="spark-progress", daemon=True)
        self.stages_seen: dict[int, int] = {}

    def __enter__(self) -> SparkProgress:
        if self._enabled:
            self._progress.start()
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._enabled:
            self._progress.stop()

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._update()
            except Exception as exc:  # py4j errors when the context stops; the job goes on
                log.debug("progress polling stopped: %s", exc)
                return

    def _update(self) -> None:
        active = set(self._tracker.getActiveStageIds())
        for stage_id in active:
            info = self._tracker.getStageInfo(stage_id)
            if info is None:
                continue
            self.stages_seen[stage_id] = info.numTasks
            if stage_id not in self._bars:
                self._bars[stage_id] = self._progress.add_task(
                    f"stage {stage_id} {info.name.split(' at ')[0]}", total=info.numTasks
                )
            self._progress.update(
                self._bars[stage_id], completed=info.numCompletedTasks, total=info.numTasks
            )
        for stage_id in [s for s in self._bars if s not in active]:
            self._progress.remove_task(self._bars.pop(stage_id))
