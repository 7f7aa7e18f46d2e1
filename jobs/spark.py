"""The one place icefeed starts a SparkSession.

Spark's Python workers run ``PYSPARK_PYTHON``; unless it points at the
interpreter that runs this code, executors would not see icefeed's packages.
We set it (and ``PYSPARK_DRIVER_PYTHON``) before any JVM starts, unless the
user already chose one.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.extras import require

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Spark's key for the byte bound of the Arrow batches it hands to Python workers.
ARROW_MAX_BYTES_CONF = "spark.sql.execution.arrow.maxBytesPerBatch"
#: The value that turns that bound off: Spark then skips its per-row size check
#: (``BatchedPythonArrowInput.writeSizedBatch`` measures every column after each row
#: unless the bound is exactly Int.MaxValue).
ARROW_BYTE_BOUND_OFF = 2**31 - 1

#: Settings icefeed relies on; a user's own ``conf`` wins over these.
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Big Arrow batches: per-batch overhead dominates the writer otherwise.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "200000",
    # Bound Arrow batches by rows only. With a byte bound (Spark's default 64 MiB) Spark
    # measures the whole batch after *every row* it adds, which took ~70 % of the JVM's
    # mapInArrow hand-over (see ARROW_BYTE_BOUND_OFF). Memory per batch is then
    # maxRecordsPerBatch x row width: lower maxRecordsPerBatch for rows wider than ~1 KB.
    ARROW_MAX_BYTES_CONF: str(ARROW_BYTE_BOUND_OFF),
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
}


#: log4j2 configuration (next to this module) for the JVMs icefeed launches itself.
LOG4J_CONFIG = "log4j2.properties"


def ensure_python_env() -> None:
    """Point Spark's Python workers at this interpreter unless already set."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def _log4j_option() -> str:
    """``-Dlog4j2.configurationFile=...`` for the log4j2.properties shipped with jobs."""
    path = Path(__file__).with_name(LOG4J_CONFIG)
    return f"-Dlog4j2.configurationFile={path.as_uri()}"


def get_spark(
    app_name: str = "icefeed",
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Return the active SparkSession, or start one with icefeed's defaults.

    ``master`` defaults to ``$ICEFEED_SPARK_MASTER`` or ``local[*]`` when no
    master is configured (spark-submit and the Spark operator configure one).
    Raises MissingExtraError if pyspark is not installed.
    """
    require("pyspark", "spark")
    ensure_python_env()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    chosen_master = master or os.environ.get("ICEFEED_SPARK_MASTER")
    if chosen_master:
        builder = builder.master(chosen_master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not under spark-submit (which launches the JVM and sets the master
        # itself): run locally on every core.
        builder = builder.master("local[*]")
    settings = {**DEFAULT_CONF, **(conf or {})}
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # We launch the JVM: give it our quiet log4j2 configuration unless the
        # user chose driver JVM options (or a log4j2 configuration) themselves.
        settings.setdefault("spark.driver.extraJavaOptions", _log4j_option())
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("ICEFEED_SPARK_LOG_LEVEL", "WARN"))
    log.info("Spark session started: master=%s", spark.sparkContext.master)
    return spark
