"""jobs.commit under real contention: collisions are forced in the real pyiceberg path
(SQLite catalog, real commits), in threads and in separate processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs.commit import RUN_ID_PROPERTY, CommitResult, StagedWrite, commit_staged
from jobs.writer import stage_write, write_iceberg
from tests.jobs.held_commits import HeldCommits, commit_in_process

pytestmark = pytest.mark.spark

TABLE = "test.contended"


def _ids(spark: SparkSession, n: int, start: int) -> DataFrame:
    return spark.range(start, start + n, numPartitions=1).select("id")


def _release_in_threads(catalog, staged: list[StagedWrite]) -> tuple[list[CommitResult], int]:
    """Commit every write in its own thread, all catalog commits released together."""
    held = HeldCommits(catalog, threading.Barrier(len(staged)))
    results: list[CommitResult] = []
    errors: list[BaseException] = []

    def commit(one: StagedWrite) -> None:
        try:
            results.append(commit_staged(one, catalog=catalog))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(one,)) for one in staged]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    return results, held.calls


def _release_in_processes(catalog, staged: list[StagedWrite]) -> tuple[list[CommitResult], int]:
    """Commit every write in its own process (own catalog), commits released together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(staged))
    queue = ctx.Queue()
    procs = [ctx.Process(target=commit_in_process, args=(one, barrier, queue)) for one in staged]
    for proc in procs:
        proc.start()
    answers = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [a for a in answers if a[0] == "error"] == []
    assert all(proc.exitcode == 0 for proc in procs)
    results = [
        CommitResult(
            table=TABLE,
            snapshot_id=snapshot_id,
            run_id=run_id,
            data_files=0,
            rows=rows,
            bytes=0,
            already_committed=already,
        )
        for run_id, already, snapshot_id, rows, _ in answers
    ]
    return results, sum(a[4] for a in answers)


RELEASES: dict[str, Callable[..., tuple[list[CommitResult], int]]] = {
    "threads": _release_in_threads,
    "processes": _release_in_processes,
}


def _snapshots_of(catalog, run_id: str) -> list[Any]:
    table = catalog.load_table(TABLE)
    return [s for s in table.snapshots() if (s.summary or {}).get(RUN_ID_PROPERTY) == run_id]


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_writers_of_one_run_id_released_together_commit_it_once(
    spark, catalog, disk_files, snapshot_files, release
) -> None:
    write_iceberg(_ids(spark, 3, start=1_000), TABLE, catalog=catalog)
    writers = 3
    # each attempt staged its own copy of the run's rows (a retried SparkApplication)
    staged = [
        stage_write(_ids(spark, 20, start=0), TABLE, catalog=catalog, run_id="daily")
        for _ in range(writers)
    ]
    results, calls = RELEASES[release](catalog, staged)

    assert calls == writers  # every writer reached the catalog; none committed a second time
    assert sorted(r.already_committed for r in results) == [False] + [True] * (writers - 1)
    assert len({r.snapshot_id for r in results}) == 1
    assert all(r.rows == 20 for r in results)
    assert len(_snapshots_of(catalog, "daily")) == 1
    table = catalog.load_table(TABLE)
    ids = table.scan().to_arrow().column("id").to_pylist()
    assert sorted(ids) == [*range(20), *range(1_000, 1_003)]
    assert disk_files(table) == snapshot_files(table)  # the losers' staged files are gone


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_colliding_writers_of_different_run_ids_all_land_after_retries(
    spark, catalog, release
) -> None:
    write_iceberg(_ids(spark, 3, start=1_000), TABLE, catalog=catalog)
    writers = 3
    staged = [
        stage_write(_ids(spark, 10, start=10 * i), TABLE, catalog=catalog, run_id=f"run-{i}")
        for i in range(writers)
    ]
    results, calls = RELEASES[release](catalog, staged)

    # all built on one base, so all but one lost the first round and committed again
    assert calls >= 2 * writers - 1
    assert not any(r.already_committed for r in results)
    assert all(len(_snapshots_of(catalog, f"run-{i}")) == 1 for i in range(writers))
    table = catalog.load_table(TABLE)
    assert len(table.snapshots()) == 1 + writers
    ids = table.scan().to_arrow().column("id").to_pylist()
    assert sorted(ids) == [*range(10 * writers), *range(1_000, 1_003)]


def test_turning_pyiceberg_retry_off_does_not_change_the_tables_properties(spark, catalog) -> None:
    from pyiceberg.table import TableProperties

    write_iceberg(_ids(spark, 3, start=0), TABLE, catalog=catalog, run_id="a")
    write_iceberg(_ids(spark, 3, start=3), TABLE, catalog=catalog, run_id="b")
    table = catalog.load_table(TABLE)
    assert TableProperties.COMMIT_NUM_RETRIES not in table.properties
    assert len(table.snapshots()) == 2
