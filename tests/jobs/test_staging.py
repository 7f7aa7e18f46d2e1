"""jobs.staging: listing and sweeping a write's prefix (local files; S3 in test_writer_backends)."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.io.pyarrow import PyArrowFileIO

from jobs.staging import delete_quietly, list_files, remove_prefix, remove_uncommitted, write_prefix


def test_write_prefix_is_under_the_tables_data_folder() -> None:
    assert (
        write_prefix("s3://b/wh/ns/t/", "run-1", "w1")
        == "s3://b/wh/ns/t/data/_icefeed_runs/run-1/w1"
    )


def test_list_and_sweep_keep_only_reported_files(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    prefix = (tmp_path / "data" / "_icefeed_runs" / "r" / "w").as_uri()
    paths = [f"{prefix}/a.parquet", f"{prefix}/k=1/b.parquet", f"{prefix}/k=2/c.parquet"]
    for path in paths:
        with io.new_output(path).create() as out:
            out.write(b"x")
    assert list_files(io, prefix) == sorted(paths)
    # the kept path may be spelled without the scheme
    removed = remove_uncommitted(io, prefix, keep={paths[1].removeprefix("file://")})
    assert sorted(removed) == sorted([paths[0], paths[2]])
    assert list_files(io, prefix) == [paths[1]]


def test_listing_a_missing_prefix_is_empty(tmp_path: Path) -> None:
    assert list_files(PyArrowFileIO(), (tmp_path / "nothing").as_uri()) == []


def test_delete_quietly_skips_missing_files_and_never_raises(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    prefix = (tmp_path / "w").as_uri()
    kept, doomed = f"{prefix}/keep.parquet", f"{prefix}/doomed.parquet"
    for path in (kept, doomed):
        with io.new_output(path).create() as out:
            out.write(b"x")
    delete_quietly(io, [doomed, f"{prefix}/never-written.parquet"])
    assert list_files(io, prefix) == [kept]


def test_remove_prefix_removes_the_files_and_the_folder(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    prefix = (tmp_path / "data" / "_icefeed_runs" / "r" / "w").as_uri()
    with io.new_output(f"{prefix}/k=1/a.parquet").create() as out:
        out.write(b"x")
    remove_prefix(io, prefix)
    assert not (tmp_path / "data" / "_icefeed_runs" / "r" / "w").exists()


# --- orphaned writes (jobs.orphans) -------------------------------------------------------

DAY = 24 * 3600.0


def _age(paths: set[str], seconds: float) -> None:
    """Set the mtime of ``paths`` ``seconds`` into the past (a writer killed long ago)."""
    import os
    import time

    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def test_a_killed_writers_files_are_swept_at_the_next_write_and_nothing_else(
    spark, catalog, disk_files, snapshot_files
) -> None:
    from jobs.writer import stage_write, write_iceberg

    df = spark.range(0, 100).selectExpr("id", "id * 2 AS v").repartition(2)
    write_iceberg(df, "test.sw", catalog=catalog, run_id="run-committed")
    table = catalog.load_table("test.sw")
    committed = snapshot_files(table)
    killed = stage_write(df, "test.sw", catalog=catalog, run_id="run-killed")  # never committed
    orphans = disk_files(table) - committed
    assert orphans and all(killed.prefix.removeprefix("file://") in p for p in orphans)
    _age(disk_files(table), 10 * DAY)  # everything old, the committed files too
    running = stage_write(df, "test.sw", catalog=catalog, run_id="run-in-progress")
    in_progress = disk_files(table) - committed - orphans
    assert in_progress

    write_iceberg(df, "test.sw", catalog=catalog, run_id="run-next")

    table = catalog.load_table("test.sw")
    on_disk = disk_files(table)
    assert not orphans & on_disk  # the killed writer's files are gone
    assert committed <= on_disk and in_progress <= on_disk
    assert table.scan().to_arrow().num_rows == 200  # the committed rows all still readable
    from jobs.writer import commit_staged

    assert commit_staged(running, catalog=catalog).rows == 100  # the in-progress run commits


def test_icefeed_sweep_command_respects_the_grace_period_and_dry_run(
    spark, catalog, disk_files, snapshot_files, capsys
) -> None:
    from jobs.writer import stage_write, write_iceberg
    from sparkapps.cli import main

    df = spark.range(0, 50).selectExpr("id").repartition(2)
    write_iceberg(df, "test.sc", catalog=catalog, run_id="run-a")
    table = catalog.load_table("test.sc")
    committed = snapshot_files(table)
    stage_write(df, "test.sc", catalog=catalog, run_id="run-killed")
    orphans = disk_files(table) - committed
    _age(disk_files(table), 2 * 3600.0)  # two hours old

    assert main(["sweep", "test.sc", "--older-than", "3"]) == 0  # within the grace period
    assert "deleted 0 orphaned file(s)" in capsys.readouterr().out
    assert main(["sweep", "test.sc", "--older-than", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete {len(orphans)} orphaned file(s)" in out
    assert disk_files(table) == committed | orphans
    assert main(["sweep", "test.sc", "--older-than", "1"]) == 0
    assert f"deleted {len(orphans)} orphaned file(s)" in capsys.readouterr().out
    assert disk_files(table) == committed
    assert catalog.load_table("test.sc").scan().to_arrow().num_rows == 50
