"""jobs.spark: the session's Python workers run the interpreter that runs icefeed."""

from __future__ import annotations

import sys

import pytest

from jobs.spark import ensure_python_env


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
