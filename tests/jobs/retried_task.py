"""A write whose task really fails once and is retried by Spark (``local[2,2]``).

Run as ``python -m tests.jobs.retried_task JOURNAL`` (own process: the test run's
shared session is ``local[2]``, which never retries a task). It writes 100 ids in two
partitions of two Arrow batches each to ``test.retry`` of the embedded catalog under
``$ICEFEED_HOME`` through :func:`jobs.writer.write_iceberg` (one file per batch), with
the catalog's FileIO set to :class:`DyingFileIO`: attempt 0 of partition 1 closes its
first data file, then its Python worker dies (``os._exit``) as it opens the second,
before the task reports anything. Spark retries the task; the driver must keep only
the files the successful job reported and delete the dead attempt's file.

The dead attempt writes ``died.json`` (its task attempt and the files it left) to
JOURNAL, every attempt that opens a data file ``attempt-<partition>-<attempt>``; the
write's result goes to stdout as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from pyiceberg.io.pyarrow import PyArrowFile, PyArrowFileIO

#: FileIO property naming the journal folder.
JOURNAL_PROPERTY = "test.retried-task.journal"
#: The partition whose first attempt dies.
DYING_PARTITION = 1
TABLE = "test.retry"
ROWS = 100

_opened: dict[tuple[int, int, int], list[str]] = {}  # (stage, partition, attempt) -> files


class DyingFileIO(PyArrowFileIO):
    """PyArrowFileIO whose Spark task attempt 0 of :data:`DYING_PARTITION` dies at its
    second data file (outside a Spark task it is PyArrowFileIO)."""

    def new_output(self, location: str) -> PyArrowFile:
        from pyspark import TaskContext

        task = TaskContext.get()
        if task is not None and location.endswith(".parquet"):
            self._opening(task, location)
        return super().new_output(location)

    def _opening(self, task: Any, location: str) -> None:
        journal = Path(self.properties[JOURNAL_PROPERTY])
        key = (task.stageId(), task.partitionId(), task.attemptNumber())
        earlier = _opened.setdefault(key, [])
        (journal / f"attempt-{task.partitionId()}-{task.attemptNumber()}").touch()
        dying = task.partitionId() == DYING_PARTITION and task.attemptNumber() == 0
        if dying and len(earlier) == 1:
            left = [p for p in (_local(e) for e in earlier) if Path(p).is_file()]
            died = {"stage": key[0], "partition": key[1], "attempt": key[2], "files": left}
            (journal / "died.json").write_text(json.dumps(died))
            os._exit(1)  # the worker dies: no cleanup in the task, no report
        earlier.append(location)


def _local(location: str) -> str:
    return location.removeprefix("file://").removeprefix("file:")


def main(journal: str) -> None:
    """Write :data:`ROWS` ids to :data:`TABLE` on ``local[2,2]``; print the result."""
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import EMBEDDED_CATALOG_NAME, embedded_catalog_properties
    from jobs.spark import get_spark
    from jobs.writer import write_iceberg

    spark = get_spark(
        "icefeed-retried-task",
        master="local[2,2]",  # 2 cores, a task may fail twice before the job fails
        conf={
            "spark.driver.memory": "1g",
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(ROWS // 4),
        },
    )
    properties = {
        **embedded_catalog_properties(),
        "py-io-impl": "tests.jobs.retried_task.DyingFileIO",
        JOURNAL_PROPERTY: journal,
    }
    catalog = SqlCatalog(EMBEDDED_CATALOG_NAME, **properties)
    df = spark.range(0, ROWS, numPartitions=2).select("id")
    result = write_iceberg(df, TABLE, catalog=catalog, run_id="retried", target_file_bytes=1)
    print(json.dumps({"rows": result.rows, "snapshot_id": result.snapshot_id}))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
