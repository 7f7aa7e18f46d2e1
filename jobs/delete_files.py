"""Find the equality delete files of a snapshot and say what to do about them.

pyiceberg applies position deletes when it reads a table but cannot apply
equality deletes (its scan planning raises a bare ``ValueError``). Readers
call :func:`equality_deletes_error` when planning fails, to turn that into a
:class:`jobs.errors.SpecError` naming the table, the snapshot and the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyiceberg.table import Table

#: How many delete file paths an error message names.
SHOWN_PATHS = 3


def equality_delete_paths(table: Table, snapshot_id: int | None) -> list[str]:
    """Return the paths of the live equality delete files of ``snapshot_id`` (None: current).

    Reads only the snapshot's delete manifests.

    Args:
        table: The Iceberg table.
        snapshot_id: The snapshot; None for the current one.

    Returns:
        The paths, sorted; empty when the snapshot has none (or there is no snapshot).
    """
    from pyiceberg.manifest import DataFileContent, ManifestContent

    snapshot = (
        table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    )
    if snapshot is None:
        return []
    paths: list[str] = []
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DELETES:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.EQUALITY_DELETES:
                paths.append(entry.data_file.file_path)
    return sorted(paths)


def equality_deletes_error(table: Table, snapshot_id: int | None) -> SpecError | None:
    """Return the error for a snapshot with equality delete files, or None if it has none.

    Args:
        table: The Iceberg table.
        snapshot_id: The snapshot; None for the current one.

    Returns:
        A SpecError naming the table, the snapshot, some of the files and what
        to do; None when the snapshot has no equality delete files.
    """
    paths = equality_delete_paths(table, snapshot_id)
    if not paths:
        return None
    snapshot = (
        table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    )
    name = ".".join(table.name())
    shown = ", ".join(paths[:SHOWN_PATHS]) + (" ..." if len(paths) > SHOWN_PATHS else "")
    sid = snapshot.snapshot_id if snapshot is not None else snapshot_id
    return SpecError(
        f"table {name} at snapshot {sid} has {len(paths)} equality delete file(s) "
        f"({shown}); icefeed reads tables with pyiceberg, which cannot apply equality deletes. "
        "Rewrite the table's data files so no equality deletes remain (e.g. in Spark with the "
        "Iceberg runtime: CALL <catalog>.system.rewrite_data_files(table => "
        f"'{name}', options => map('delete-file-threshold', '1'))), "
        "or, to read it, pin a snapshot_id from before the equality deletes were committed"
    )
