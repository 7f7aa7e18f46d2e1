"""Sweep orphaned staged files: what a writer killed between staging and commit left behind.

A write stages its files under ``<table>/data/_icefeed_runs/<run id>/<write id>/``
(:mod:`jobs.staging`); committed files stay there, referenced by the table. A
writer killed after staging and before its commit (or its own cleanup) leaves
files no snapshot references. :func:`sweep_orphans` deletes them, one write
folder at a time, when

* no snapshot of the table (current or older, not yet expired) references the
  file, and
* the write folder's *newest* file is older than the grace period — a write
  still in progress keeps writing files, so its folder is never old enough.
  The grace period must exceed the longest write (default: 3 days, the same as
  Iceberg's ``remove_orphan_files``; table property ``icefeed.orphan-grace-seconds``).

It runs at the start of every :func:`jobs.writer.stage_write` of the table and
by ``icefeed sweep TABLE``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.errors import SpecError
from jobs.staging import (
    RUNS_FOLDER,
    delete_quietly,
    fs_path_uri,
    normalize_path,
    remove_prefix,
)

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 3 * 24 * 3600.0
GRACE_PROPERTY = "icefeed.orphan-grace-seconds"


@dataclass(frozen=True)
class SweepResult:
    """What a sweep found: the files it deleted (or would), and the writes it left alone."""

    deleted: tuple[str, ...]
    kept_recent_writes: int
    dry_run: bool


def grace_seconds(table: Table) -> float:
    """Return the table's grace period: property ``icefeed.orphan-grace-seconds`` or 3 days.

    Raises:
        SpecError: the property is not a non-negative number.
    """
    raw = table.properties.get(GRACE_PROPERTY)
    if raw is None:
        return DEFAULT_GRACE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise SpecError(f"table property {GRACE_PROPERTY}={raw!r} must be seconds >= 0")
    return value


def sweep_orphans(
    table: Table,
    *,
    older_than_seconds: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> SweepResult:
    """Delete staged files of ``table`` that no snapshot references, in writes older than grace.

    Args:
        table: the Iceberg table (refreshed here, so commits up to now count).
        older_than_seconds: the grace period (None: :func:`grace_seconds`).
        dry_run: only report what would be deleted.
        now: the current time, seconds since the epoch (None: ``time.time()``).

    Returns:
        The :class:`SweepResult`.

    Raises:
        SpecError: a negative grace period.
    """
    grace = grace_seconds(table) if older_than_seconds is None else older_than_seconds
    if grace < 0:
        raise SpecError(f"older_than_seconds: {grace!r} must be >= 0")
    now = time.time() if now is None else now
    root = f"{table.metadata.location.rstrip('/')}/data/{RUNS_FOLDER}"
    writes = _files_by_write(table.io, root)
    old = {w: files for w, files in writes.items() if max(m for _, m in files) < now - grace}
    if not old:
        return SweepResult((), len(writes), dry_run)
    table = table.refresh()
    referenced = _referenced_files(table)
    doomed: list[str] = []
    for write, files in sorted(old.items()):
        orphans = [path for path, _ in files if normalize_path(path) not in referenced]
        doomed += orphans
        if not dry_run and orphans:
            log.info("sweeping %d orphaned staged file(s) under %s", len(orphans), write)
            delete_quietly(table.io, orphans)
            if len(orphans) == len(files):
                remove_prefix(table.io, write)
    return SweepResult(tuple(doomed), len(writes) - len(old), dry_run)


def _files_by_write(io: FileIO, root: str) -> dict[str, list[tuple[str, float]]]:
    """Map each ``<root>/<run>/<write>`` folder to its files and their mtimes."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if not isinstance(io, PyArrowFileIO):
        raise SpecError(f"sweeping orphaned files needs PyArrowFileIO, not {type(io).__name__}")
    import pyarrow.fs as pafs

    scheme, netloc, path = PyArrowFileIO.parse_location(root, io.properties)
    fs = io.fs_by_scheme(scheme, netloc)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    by_write: dict[str, list[tuple[str, float]]] = defaultdict(list)
    base = path.rstrip("/")
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(base) :].strip("/").split("/")
        if len(parts) < 3:  # a file directly under a run folder is no write's
            continue
        write = fs_path_uri(scheme, netloc, f"{base}/{parts[0]}/{parts[1]}")
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        by_write[write].append((fs_path_uri(scheme, netloc, info.path), mtime))
    return by_write


def _referenced_files(table: Table) -> set[str]:
    """Every data/delete file path any snapshot of ``table`` references (normalised)."""
    paths: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                paths.add(normalize_path(entry.data_file.file_path))
    return paths
