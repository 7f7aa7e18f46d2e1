"""Commit staged Iceberg writes: one snapshot per run id, retried under contention.

:func:`commit_staged` commits a :class:`StagedWrite` (the files :mod:`jobs.writer`
staged) as **one** snapshot whose summary carries ``icefeed.run-id``; a commit
that loses an optimistic-concurrency race is refreshed and retried with backoff.
A run id that already committed makes it a no-op (idempotency, see
:func:`find_run`). The retry is icefeed's own: pyiceberg's commit retry
(``commit.retry.num-retries``) is turned off for these commits, because it
rebuilds a losing append on top of the winner without looking at the run id,
so two writers of one run id would both land. Every conflict comes back here,
and the run id is checked again before the next attempt. :func:`abort_staged`
deletes what a failed write staged, never a file a snapshot references.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from jobs.data_file_info import DataFileInfo
from jobs.delete_files import equality_deletes_error
from jobs.errors import CommitError, SpecError
from jobs.staging import delete_quietly, remove_prefix, remove_uncommitted

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Snapshot summary key that records which run produced a snapshot.
RUN_ID_PROPERTY = "icefeed.run-id"
#: Commit attempts (each after a refresh) before giving up on a contended table.
MAX_COMMIT_ATTEMPTS = 8
#: First backoff between commit attempts, doubled each time (plus jitter).
COMMIT_BACKOFF_SECONDS = 0.1


class WriteMode(str, Enum):
    """What a write does to the rows already in the table."""

    APPEND = "append"
    OVERWRITE = "overwrite"


@dataclass(frozen=True, kw_only=True)
class CommitResult:
    """What a committed (or earlier committed) write did: one snapshot of ``table``."""

    table: str
    snapshot_id: int | None
    run_id: str
    data_files: int
    rows: int
    bytes: int
    already_committed: bool = False


@dataclass(frozen=True, kw_only=True)
class StagedWrite:
    """Data files written for ``run_id`` under ``prefix`` but not yet committed.

    ``previous`` is set (and ``data_files`` empty) when the run id had already
    committed to the table: committing it again is a no-op.
    """

    table: str
    run_id: str
    mode: WriteMode
    data_files: tuple[DataFileInfo, ...]
    rows: int
    bytes: int
    prefix: str = ""
    previous: CommitResult | None = None


def catalog_or_default(catalog: Catalog | None) -> Catalog:
    if catalog is not None:
        return catalog
    from jobs.catalog import load_catalog

    return load_catalog()


def parse_identifier(table: str) -> tuple[str, str]:
    parts = table.split(".")
    if len(parts) != 2 or not all(parts):
        raise SpecError(f"table {table!r} must be 'namespace.name'")
    return parts[0], parts[1]


# --- run lookup -------------------------------------------------------------------


def run_snapshot(tbl: Table, run_id: str) -> Snapshot | None:
    from pyiceberg.table.snapshots import ancestors_of

    for snapshot in ancestors_of(tbl.current_snapshot(), tbl.metadata):
        if snapshot.summary is not None and snapshot.summary.get(RUN_ID_PROPERTY) == run_id:
            return snapshot
    return None


def run_result(table: str, run_id: str, snapshot: Snapshot, *, already: bool) -> CommitResult:
    summary = snapshot.summary
    value = (lambda key: int(summary.get(key) or 0)) if summary is not None else (lambda key: 0)
    return CommitResult(
        table=table,
        snapshot_id=snapshot.snapshot_id,
        run_id=run_id,
        data_files=value("added-data-files"),
        rows=value("added-records"),
        bytes=value("added-files-size"),
        already_committed=already,
    )


def find_run(
    table: str | Table, run_id: str, *, catalog: Catalog | None = None
) -> CommitResult | None:
    """Return the result of the snapshot that committed ``run_id`` to ``table``, if any.

    Looks at the current snapshot and its ancestors (a rolled-back run does not
    count). Returns None if the table does not exist or no snapshot carries it.
    """
    from pyiceberg.exceptions import NoSuchTableError

    if isinstance(table, str):
        try:
            tbl = catalog_or_default(catalog).load_table(parse_identifier(table))
        except NoSuchTableError:
            return None
        name = table
    else:
        tbl = table
        name = ".".join(tbl.name()[-2:])
    snapshot = run_snapshot(tbl, run_id)
    return None if snapshot is None else run_result(name, run_id, snapshot, already=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# --- commit -----------------------------------------------------------------------


def _files_of_snapshot(tbl: Table, snapshot: Snapshot) -> set[str]:
    """Paths of the data files ``snapshot`` added."""
    from pyiceberg.manifest import ManifestEntryStatus

    paths: set[str] = set()
    for manifest in snapshot.manifests(tbl.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
            if entry.status == ManifestEntryStatus.ADDED:
                paths.add(entry.data_file.file_path)
    return paths


def _drop_unreferenced(tbl: Table, staged: StagedWrite, snapshot: Snapshot) -> None:
    referenced = _files_of_snapshot(tbl, snapshot)
    doomed = [i.path for i in staged.data_files if i.path not in referenced]
    if doomed:
        delete_quietly(tbl.io, doomed)


def _without_commit_retry(tbl: Table) -> Table:
    """A view of ``tbl`` whose commits pyiceberg does not retry (icefeed retries them).

    pyiceberg reads ``commit.retry.num-retries`` from the metadata of the table the
    transaction starts from; the catalog applies the commit to the metadata it
    loads itself, so the override is never written to the table.
    """
    from pyiceberg.table import Table, TableProperties

    properties = {**tbl.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    metadata = tbl.metadata.model_copy(update={"properties": properties})
    return Table(tbl.name(), metadata, tbl.metadata_location, tbl.io, tbl.catalog, tbl.config)


def _live_data_files(tbl: Table) -> list[DataFile]:
    """The current snapshot's data files (what an overwrite removes).

    Raises SpecError if the snapshot has equality delete files (pyiceberg
    cannot plan it); position delete files stay behind, pointing at removed files.
    """
    try:
        return [task.file for task in tbl.scan().plan_files()]
    except ValueError as exc:  # pyiceberg's way of refusing equality deletes
        error = equality_deletes_error(tbl, None)
        if error is None:
            raise
        raise error from exc


def _commit_once(tbl: Table, staged: StagedWrite, properties: dict[str, str]) -> Table:
    """Try one commit of ``staged`` on top of ``tbl``; return the table as committed.

    Raises CommitFailedException (pyiceberg's, not retried) if the table changed
    since ``tbl`` was loaded.
    """
    tbl = _without_commit_retry(tbl)
    spec_id = tbl.metadata.default_spec_id
    version = tbl.metadata.format_version
    files = [i.to_data_file(spec_id=spec_id, format_version=version) for i in staged.data_files]
    with tbl.transaction() as tx:
        update = tx.update_snapshot(snapshot_properties=properties)
        if staged.mode is WriteMode.APPEND:
            with update.fast_append() as append:
                for data_file in files:
                    append.append_data_file(data_file)
        else:
            with update.overwrite() as overwrite:
                if tbl.current_snapshot() is not None:
                    for data_file in _live_data_files(tbl):
                        overwrite.delete_data_file(data_file)
                for data_file in files:
                    overwrite.append_data_file(data_file)
    return tbl


def commit_staged(
    staged: StagedWrite,
    *,
    catalog: Catalog | None = None,
    snapshot_properties: dict[str, str] | None = None,
    on_attempt: Callable[[int], None] | None = None,
) -> CommitResult:
    """Commit ``staged`` as one snapshot tagged with its run id; return what it did.

    A no-op returning the earlier result (``already_committed=True``) if the run
    id is already committed. A commit that loses a race is retried here (see the
    module doc).

    Args:
        staged: What :func:`jobs.writer.stage_write` staged.
        catalog: The Iceberg catalog (default: :func:`jobs.catalog.load_catalog`).
        snapshot_properties: Extra snapshot summary properties (the run id is added).
        on_attempt: Called with the attempt number (0 for the first, 1 for the first
            retry, ...) at the start of every commit attempt, once the table is
            loaded (attempt 0) or refreshed and before the run id is checked on it;
            a seam for tracing and for tests that force collisions. Not called when
            ``staged`` is a no-op (``previous`` set). An exception it raises
            propagates, nothing committed by that attempt.

    Returns:
        The run's CommitResult (``already_committed=True`` if the run id had committed).

    Raises:
        CommitError: the table stayed contended for :data:`MAX_COMMIT_ATTEMPTS`
            attempts or the catalog failed (and the run is not visible after a
            refresh); the staged files are kept, so the caller may retry or
            :func:`abort_staged`.
        SpecError: an overwrite of a table with equality delete files (nothing
            committed, the staged files kept).
    """
    from pyiceberg.exceptions import CommitFailedException

    if staged.previous is not None:
        return replace(staged.previous, already_committed=True)
    properties = {**(snapshot_properties or {}), RUN_ID_PROPERTY: staged.run_id}
    tbl = catalog_or_default(catalog).load_table(parse_identifier(staged.table))
    for attempt in range(MAX_COMMIT_ATTEMPTS):
        if attempt:
            tbl.refresh()
        if on_attempt is not None:
            on_attempt(attempt)
        previous = run_snapshot(tbl, staged.run_id)
        if previous is not None:
            _drop_unreferenced(tbl, staged, previous)
            log.info("run %s already committed to %s", staged.run_id, staged.table)
            return run_result(staged.table, staged.run_id, previous, already=True)
        try:
            committed = _commit_once(tbl, staged, properties)
        except CommitFailedException as exc:
            wait = COMMIT_BACKOFF_SECONDS * 2**attempt * (1 + uuid.uuid4().int % 100 / 100)
            log.warning(
                "commit to %s lost a race (attempt %d/%d): %s; retrying in %.2fs",
                staged.table,
                attempt + 1,
                MAX_COMMIT_ATTEMPTS,
                exc,
                wait,
            )
            time.sleep(wait)
            continue
        except SpecError:  # the table cannot be overwritten as it is; nothing was committed
            raise
        except Exception as exc:  # outcome unknown (catalog/storage error): look before failing
            landed = _landed(tbl, staged.run_id)
            if landed is None:
                raise CommitError(
                    f"could not commit run {staged.run_id} to {staged.table}: "
                    f"{type(exc).__name__}: {first_line(exc)}; the staged files are kept"
                ) from exc
            log.warning("commit of run %s reported %s but landed", staged.run_id, exc)
            return run_result(staged.table, staged.run_id, landed, already=False)
        snapshot = run_snapshot(committed, staged.run_id)
        if snapshot is None:  # the commit returned the new metadata; not finding it is a bug
            raise CommitError(f"commit of run {staged.run_id} to {staged.table} is not visible")
        log.info(
            "committed run %s to %s: snapshot %d", staged.run_id, staged.table, snapshot.snapshot_id
        )
        return run_result(staged.table, staged.run_id, snapshot, already=False)
    raise CommitError(
        f"could not commit run {staged.run_id} to {staged.table} after {MAX_COMMIT_ATTEMPTS} "
        "attempts: the table is changing too fast; retry, the staged files are kept"
    )


def _landed(tbl: Table, run_id: str) -> Snapshot | None:
    """The run's snapshot after a refresh, or None (also if the refresh fails)."""
    try:
        tbl.refresh()
    except Exception as exc:  # the catalog is unreachable: treat as not landed
        log.warning("could not refresh %s to check run %s: %s", tbl.name(), run_id, exc)
        return None
    return run_snapshot(tbl, run_id)


def abort_staged(staged: StagedWrite, *, catalog: Catalog | None = None) -> None:
    """Delete the staged files of ``staged`` unless a snapshot references them.

    Safe after a failed commit, and a no-op for files that the run's committed
    snapshot references (aborting a committed write never damages the table).
    """
    if staged.previous is not None or not staged.prefix:
        return
    tbl = catalog_or_default(catalog).load_table(parse_identifier(staged.table))
    committed = run_snapshot(tbl, staged.run_id)
    if committed is None:
        remove_prefix(tbl.io, staged.prefix)
    else:
        remove_uncommitted(tbl.io, staged.prefix, keep=_files_of_snapshot(tbl, committed))
