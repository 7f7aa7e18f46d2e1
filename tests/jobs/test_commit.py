"""jobs.commit under real contention: every writer's first commit attempt is held at
icefeed's own seam (``commit_staged(on_attempt=...)``) until all have loaded the same
base, then all commit for real (pyiceberg, SQLite catalog), in threads and in separate
processes; the attempts each writer made show icefeed's retry landing the losers."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs.commit import RUN_ID_PROPERTY, CommitResult, StagedWrite, commit_staged
from jobs.writer import stage_write, write_iceberg
from tests.jobs.held_commits import HeldAttempts, commit_in_process

pytestmark = pytest.mark.spark

TABLE = "test.contended"


def _ids(spark: SparkSession, n: int, start: int) -> DataFrame:
    return spark.range(start, start + n, numPartitions=1).select("id")


#: What one writer's commit gave: its result and the attempts ``commit_staged`` made.
Outcome = tuple[CommitResult, list[int]]


def _release_in_threads(catalog, staged: list[StagedWrite]) -> list[Outcome]:
    """Commit every write in its own thread, every first attempt released together."""
    barrier = threading.Barrier(len(staged))
    outcomes: list[Outcome] = []
    errors: list[BaseException] = []

    def commit(one: StagedWrite) -> None:
        held = HeldAttempts(barrier)
        try:
            outcomes.append((commit_staged(one, catalog=catalog, on_attempt=held), held.attempts))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(one,)) for one in staged]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    return outcomes


def _release_in_processes(catalog, staged: list[StagedWrite]) -> list[Outcome]:
    """Commit every write in its own process (own catalog), first attempts released together."""
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
    return [
        (
            CommitResult(
                table=TABLE,
                snapshot_id=snapshot_id,
                run_id=run_id,
                data_files=0,
                rows=rows,
                bytes=0,
                already_committed=already,
            ),
            attempts,
        )
        for run_id, already, snapshot_id, rows, attempts in answers
    ]


RELEASES: dict[str, Callable[..., list[Outcome]]] = {
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
    outcomes = RELEASES[release](catalog, staged)
    results = [result for result, _ in outcomes]

    # one won the first round; every other lost it, and its retry (attempt 1, on the
    # refreshed table) found the run committed and committed nothing
    by_landing = sorted(outcomes, key=lambda o: o[0].already_committed)
    assert [(r.already_committed, a) for r, a in by_landing] == [(False, [0])] + [
        (True, [0, 1])
    ] * (writers - 1)
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
    outcomes = RELEASES[release](catalog, staged)
    results = [result for result, _ in outcomes]

    # all built on one base, so one won the first round and every other writer landed
    # through icefeed's retry (attempts 0, 1, ... in order; more if it lost again)
    attempts = sorted((a for _, a in outcomes), key=len)
    assert attempts[0] == [0]
    assert all(len(a) >= 2 and a == list(range(len(a))) for a in attempts[1:]), attempts
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
