"""Where a write puts its files before the commit, and how leftovers are removed.

Layout: ``<table location>/data/_icefeed_runs/<run id>/<write id>/[<partition>/]<uuid>.parquet``.
The run id names the logical run (what idempotency is keyed on); the write id is
unique per :func:`jobs.writer.stage_write` call, so two attempts of one run never
touch each other's files. Committed files stay where they are — Iceberg tables
reference files by full path — so cleanup only ever deletes paths that the
commit does not reference.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

log = logging.getLogger(__name__)

#: Folder under ``<table location>/data`` that holds every write's files.
RUNS_FOLDER = "_icefeed_runs"


def write_prefix(table_location: str, run_id: str, write_id: str) -> str:
    """Return the folder of one write of ``run_id`` under the table's data folder."""
    return f"{table_location.rstrip('/')}/data/{RUNS_FOLDER}/{run_id}/{write_id}"


def list_files(io: FileIO, prefix: str) -> list[str]:
    """Return the URIs of all files under ``prefix`` (recursively); [] if it does not exist.

    Works for pyiceberg's PyArrowFileIO (file://, s3://, …) and FsspecFileIO.
    """
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if isinstance(io, PyArrowFileIO):
        import pyarrow.fs as pafs

        scheme, netloc, path = PyArrowFileIO.parse_location(prefix, io.properties)
        fs = io.fs_by_scheme(scheme, netloc)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(
            fs_path_uri(scheme, netloc, info.path)
            for info in infos
            if info.type == pafs.FileType.File
        )
    from pyiceberg.io.fsspec import FsspecFileIO

    if isinstance(io, FsspecFileIO):
        from urllib.parse import urlparse

        uri = urlparse(prefix)
        fs = io.get_fs(uri.scheme, uri.netloc)
        if not fs.exists(prefix):
            return []
        return sorted(
            f"{uri.scheme}://{p}" if uri.scheme not in ("", "file") else f"file://{p}"
            for p in fs.find(prefix)
        )
    raise TypeError(f"cannot list files with {type(io).__name__}")


def fs_path_uri(scheme: str, netloc: str, path: str) -> str:
    """Return the URI of a pyarrow filesystem ``path`` (object stores keep the bucket in it).

    Args:
        scheme: the URI scheme, e.g. ``s3`` or ``file``.
        netloc: the bucket or host ('' for local files).
        path: the path as pyarrow's filesystem spells it.

    Returns:
        ``scheme://netloc/path``.
    """
    if netloc and path.startswith(f"{netloc}/"):
        return f"{scheme}://{path}"
    return f"{scheme}://{netloc}/{path.lstrip('/')}"


def remove_uncommitted(io: FileIO, prefix: str, keep: set[str]) -> list[str]:
    """Delete every file under ``prefix`` whose path is not in ``keep``; return them.

    Used after a successful Spark job (files of failed or speculative task
    attempts) and after an abort (``keep`` empty).
    """
    normalized_keep = {normalize_path(p) for p in keep}
    doomed = [p for p in list_files(io, prefix) if normalize_path(p) not in normalized_keep]
    if doomed:
        log.info("deleting %d uncommitted file(s) under %s", len(doomed), prefix)
        delete_quietly(io, doomed)
    return doomed


def remove_prefix(io: FileIO, prefix: str) -> None:
    """Delete ``prefix`` and everything under it, including object-store folder markers.

    pyarrow's S3 filesystem keeps an empty "folder" object when the last file of
    a folder is deleted; deleting the folder removes that one, though pyarrow then
    marks the parent folder the same way (zero bytes, never a data file).
    """
    remove_uncommitted(io, prefix, keep=set())
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if isinstance(io, PyArrowFileIO):
        scheme, netloc, path = PyArrowFileIO.parse_location(prefix, io.properties)
        try:
            io.fs_by_scheme(scheme, netloc).delete_dir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # cleanup must not hide the error that caused it
            log.warning("could not delete folder %s: %s", prefix, exc)


def normalize_path(path: str) -> str:
    """Return ``path`` as paths are compared (``file:/x``, ``file:///x`` and ``/x`` are ``/x``).

    Args:
        path: a URI or local path.

    Returns:
        The path without a ``file:`` scheme; other URIs unchanged.
    """
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif path.startswith("file:"):
        path = path[len("file:") :]
    return path


def delete_quietly(io: FileIO, paths: list[str]) -> None:
    """Delete ``paths`` that exist; log (never raise) what could not be deleted.

    Used wherever a write removes its own files (a failed task, an abort, a
    commit that another attempt of the run won), so cleanup never hides the
    error that caused it.

    Args:
        io: The table's FileIO.
        paths: URIs of files to delete; missing ones are skipped.
    """
    for path in paths:
        try:
            io.delete(path)
        except FileNotFoundError:
            continue
        except OSError as exc:  # cleanup must not hide the error that caused it
            log.warning("could not delete %s: %s", path, exc)
