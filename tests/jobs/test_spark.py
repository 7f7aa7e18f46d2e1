"""jobs.spark: the session's Python workers run the interpreter that runs icefeed."""

from __future__ import annotations

import sys

import pytest

from jobs.spark import ARROW_BYTE_BOUND_OFF, ARROW_MAX_BYTES_CONF, ensure_python_env


def test_python_env_defaults_to_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    monkeypatch.delenv("PYSPARK_DRIVER_PYTHON", raising=False)
    ensure_python_env()
    import os

    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    assert os.environ["PYSPARK_DRIVER_PYTHON"] == sys.executable


def test_python_env_keeps_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/python/bin/python3")
    ensure_python_env()
    import os

    assert os.environ["PYSPARK_PYTHON"] == "/opt/python/bin/python3"


@pytest.mark.spark
def test_executors_run_the_venv_interpreter(spark) -> None:  # type: ignore[no-untyped-def]
    def which_python(_: object) -> list[str]:
        import sys as worker_sys

        return [worker_sys.executable]

    seen = set(spark.sparkContext.parallelize(range(4), 2).mapPartitions(which_python).collect())
    assert seen == {sys.executable}


def test_quiet_log4j_configuration_ships_with_jobs() -> None:
    from pathlib import Path
    from urllib.parse import urlparse

    from jobs.spark import _log4j_option

    option = _log4j_option()
    assert option.startswith("-Dlog4j2.configurationFile=file:")
    path = Path(urlparse(option.split("=", 1)[1]).path)
    text = path.read_text(encoding="utf-8")
    assert "rootLogger.level = warn" in text
    assert "org.apache.hadoop.util.NativeCodeLoader" in text


@pytest.mark.spark
def test_session_uses_the_quiet_log4j_configuration(spark) -> None:  # type: ignore[no-untyped-def]
    from jobs.spark import _log4j_option

    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions", "")
    assert _log4j_option() in options
    jvm = spark.sparkContext._jvm
    assert (
        jvm.java.lang.System.getProperty("log4j2.configurationFile")
        == _log4j_option().split("=", 1)[1]
    )


def test_session_bounds_arrow_batches_by_rows_only(spark) -> None:  # type: ignore[no-untyped-def]
    """No per-row size check in the JVM → Python Arrow hand-over (see jobs.spark)."""
    assert spark.conf.get(ARROW_MAX_BYTES_CONF).rstrip("bB") == str(ARROW_BYTE_BOUND_OFF)
    assert int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")) > 0
