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
