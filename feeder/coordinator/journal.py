"""The coordinator's journal: what a restarted driver needs to continue every epoch.

A folder chosen by the operator (``journal_dir``; by default ``<cache_dir>/icefeed-journal``)
holds two files (format documented in PROTOCOL.md, *Journal*):

- ``ticket.key``: the session's ticket key, 32 raw bytes, file mode 0600. With the
  same key a restarted coordinator has the same session id, so outstanding
  tickets and lease ids stay valid and data nodes adopt the cache folders the
  dead nodes left (their tag derives from the key). The key is never logged.
- ``journal.json``: ``{"format", "version", "session", "identity", "snapshots", "books"}``
  — which table, projection, filter and slice plan the session started with
  (``identity``), the snapshots it serves now over its slice ids (``snapshots``: each
  live snapshot's id, plan digest and slice ids; a following feeder serves several),
  and every job's epochs, their snapshots and their dynamic lease books (``books``).

Every write goes to a temporary file in the folder, is fsynced and renamed over
the old one (then the folder is fsynced), so a crash leaves the old or the new
journal, never half of one. A restart with the same arguments finds the same
identity and continues the session (:meth:`Journal.recorded` says which snapshots to
plan again; the caller checks each against its digest); other arguments (another
table, projection, filter, slice size, or a snapshot the journal did not pin) start
a fresh session, with a warning. Version 1 journals (before refreshes were
journalled) are read too. A damaged journal or one of another version is a
FeederError that names the file and what to do. A clean stop deletes the journal.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feeder.coordinator.snapshots import plan_digest
from feeder.protocol.tickets import TicketSigner, new_key
from jobs.errors import FeederError

if TYPE_CHECKING:
    from feeder.coordinator.served import ServedSnapshot

log = logging.getLogger(__name__)

FORMAT = "icefeed-feeder-journal"
VERSION = 2
#: versions this icefeed reads (1: written before refreshes were journalled)
READABLE_VERSIONS = (1, 2)
DIR_NAME = "icefeed-journal"
KEY_NAME = "ticket.key"
STATE_NAME = "journal.json"
KEY_BYTES = 32
_MOVE_AWAY = (
    "move the folder away (or delete it) to start a fresh session; consumers "
    "mid-epoch then have to start their epoch again"
)


def default_journal_dir(
    journal_dir: str | Path | None, cache_dir: str | Path | None
) -> Path | None:
    """Return where the journal lives: ``journal_dir``, else under ``cache_dir``, else nowhere.

    Args:
        journal_dir: the operator's journal folder, or None.
        cache_dir: the data nodes' cache root, or None (a temporary folder: no journal).

    Returns:
        The journal folder, or None when the session keeps no journal.
    """
    if journal_dir is not None:
        return Path(journal_dir)
    if cache_dir is not None:
        return Path(cache_dir) / DIR_NAME
    return None


def session_identity(served: ServedSnapshot, *, slice_bytes: int) -> dict[str, Any]:
    """Return what fixes a session's slices: a restart continues only the same identity.

    Args:
        served: the pinned snapshot and its slice plans.
        slice_bytes: the slice size target the plans were cut with.

    Returns:
        A JSON-able document (table, snapshot, projection, filter, slice size, plan digest).
    """
    return {
        "table": served.table,
        "snapshot_id": served.snapshot_id,
        "columns": list(served.columns) if served.columns is not None else None,
        "row_filter": served.row_filter,
        "slice_bytes": slice_bytes,
        "plan_digest": plan_digest(served.plans),
    }


def _snapshot_id(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"snapshot id {value!r} is not an integer")


def _ids(values: Any) -> list[int]:
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValueError("slice ids must be a list of integers >= 0")
    return values


@dataclass(frozen=True)
class RecordedSnapshot:
    """One live snapshot as the journal recorded it.

    Attributes:
        snapshot_id: the snapshot (None: a table without one).
        plan_digest: :func:`~feeder.coordinator.snapshots.plan_digest` of its plans.
        slices: the session slice id of each of its plans, in plan order (None: their
            positions, a session that never refreshed).
    """

    snapshot_id: int | None
    plan_digest: str
    slices: tuple[int, ...] | None


@dataclass(frozen=True)
class Recorded:
    """What :meth:`Journal.recorded` found: the session to continue, if its snapshots
    plan again to the same slices.

    Attributes:
        identity: the journal's session identity (pass it to :meth:`Journal.begin`).
        live: the live snapshots, oldest first (the last is the newest).
        slice_count: slice ids the session handed out (None: the first snapshot's count).
    """

    identity: dict[str, Any]
    live: tuple[RecordedSnapshot, ...]
    slice_count: int | None


@dataclass(frozen=True)
class Resumed:
    """What :meth:`Journal.begin` hands the coordinator.

    Attributes:
        key: the session's ticket key (restored or new).
        books: the epoch state to continue (``EpochBooks.state()``), None for a fresh session.
    """

    key: bytes
    books: dict[str, Any] | None

    def __repr__(self) -> str:
        return f"Resumed(key=<hidden>, restored={self.books is not None})"


class Journal:
    """One session's journal folder (see the module docstring).

    Args:
        path: the folder (created with mode 0700 if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.key_file = self.path / KEY_NAME
        self.state_file = self.path / STATE_NAME
        self._identity: dict[str, Any] | None = None
        self._head: str | None = None  # the state file's text before the books (per session)
        self._snapshots: str | None = None  # the live snapshots' text in the head
        self._session: str | None = None

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # --- reading ---------------------------------------------------------------------------

    def recorded(
        self,
        *,
        table: str,
        columns: Sequence[str] | None,
        row_filter: str | None,
        slice_bytes: int,
        snapshot_id: int | None,
    ) -> Recorded | None:
        """Return the snapshots the journal's session serves, if it ran with these arguments.

        Args:
            table, columns, row_filter, slice_bytes: the new session's arguments.
            snapshot_id: the snapshot the new session is asked to pin (None: the table's
                current one); a journal whose session started at another is not continued.

        Returns:
            What to plan again and continue, or None (no journal, other arguments, or a
            version 1 journal of a session that refreshed: those are not continued).

        Raises:
            FeederError: the journal is damaged or of another version.
        """
        state = self._read_state()
        if state is None:
            return None
        ident = state["identity"]
        same = (
            ident.get("table") == table
            and ident.get("columns") == (list(columns) if columns is not None else None)
            and ident.get("row_filter") == row_filter
            and ident.get("slice_bytes") == slice_bytes
            and (snapshot_id is None or ident.get("snapshot_id") == snapshot_id)
        )
        if not same or ident.get("refreshed"):  # "refreshed": version 1 after a refresh
            return None
        snapshots = state.get("snapshots")
        if snapshots is None:  # version 1, or a session that has not written one yet
            first = RecordedSnapshot(
                snapshot_id=_snapshot_id(ident.get("snapshot_id")),
                plan_digest=str(ident.get("plan_digest")),
                slices=None,
            )
            return Recorded(identity=dict(ident), live=(first,), slice_count=None)
        try:
            live = tuple(
                RecordedSnapshot(
                    snapshot_id=_snapshot_id(entry["snapshot_id"]),
                    plan_digest=str(entry["plan_digest"]),
                    slices=tuple(_ids(entry["slices"])),
                )
                for entry in snapshots["live"]
            )
            count = snapshots["slice_count"]
            if not live or not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"slice_count {count!r} with {len(live)} live snapshots")
        except (KeyError, TypeError, ValueError) as exc:
            raise self._damaged(f"its live snapshots do not parse ({exc!r})") from exc
        return Recorded(identity=dict(ident), live=live, slice_count=count)

    def begin(self, identity: Mapping[str, Any]) -> Resumed:
        """Continue the journal's session if it served ``identity``, else start a fresh one.

        Args:
            identity: the new session's :func:`session_identity`.

        Returns:
            The key and, when continuing, the epoch state to restore.

        Raises:
            FeederError: the journal is damaged, of another version, or cannot be written.
        """
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_temporaries()
        state = self._read_state()
        key = self._read_key() if state is not None else None
        if state is not None and key is not None and state["identity"] == dict(identity):
            session = TicketSigner(key).session_id
            if state.get("session") != session:
                raise self._damaged(
                    f"{KEY_NAME} is of session {session}, {STATE_NAME} of {state.get('session')}"
                )
            self._identity, self._session, self._head = dict(identity), session, None
            books = state.get("books")
            log.info(
                "journal %s: continuing feeder session %s (%d epoch book(s))",
                self.path,
                session,
                len(books["books"]) if isinstance(books, dict) else 0,
            )
            return Resumed(key, books if isinstance(books, dict) else None)
        if state is not None:
            log.warning(
                "journal %s was written for another session (%s); starting a fresh session",
                self.path,
                _difference(state["identity"], identity),
            )
        key = new_key()
        self._identity, self._session = dict(identity), TicketSigner(key).session_id
        self._head = None
        self._write(self.key_file, key)
        self.save(None)
        log.info("journal %s: new feeder session %s", self.path, self._session)
        return Resumed(key, None)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._damaged(f"cannot read {STATE_NAME}: {exc}") from exc
        try:
            state = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._damaged(f"{STATE_NAME} is not JSON (truncated or damaged: {exc})") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise self._damaged(f"{STATE_NAME} is not an icefeed feeder journal")
        version = state.get("version")
        if version not in READABLE_VERSIONS:
            raise FeederError(
                f"journal {self.state_file} has format version {version!r}, but this icefeed "
                f"reads version {VERSION} (and 1): run the icefeed release that wrote it, or "
                f"{_MOVE_AWAY}"
            )
        if not isinstance(state.get("identity"), dict):
            raise self._damaged(f"{STATE_NAME} has no session identity")
        return state

    def _read_key(self) -> bytes | None:
        try:
            key = self.key_file.read_bytes()
            mode = stat.S_IMODE(self.key_file.stat().st_mode)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._damaged(f"cannot read {KEY_NAME}: {exc}") from exc
        if len(key) != KEY_BYTES:
            raise self._damaged(f"{KEY_NAME} holds {len(key)} bytes, not {KEY_BYTES}")
        if mode & 0o077:
            log.warning("journal %s: %s was readable by others; now 0600", self.path, KEY_NAME)
            os.chmod(self.key_file, 0o600)
        return key

    def _damaged(self, why: str) -> FeederError:
        return FeederError(f"journal {self.path} is damaged: {why}; {_MOVE_AWAY}")

    # --- writing ---------------------------------------------------------------------------

    def save(self, books: Mapping[str, Any] | str | None, *, snapshots: str | None = None) -> None:
        """Replace the journal's state with ``books`` and ``snapshots`` (atomically, fsynced).

        Args:
            books: ``EpochBooks.state()``, the same as JSON text (``EpochBooks.state_text()``,
                spliced in as it is), or None for none yet.
            snapshots: the live snapshots as JSON text (``LiveSnapshots.state_text()``,
                spliced in as it is), or None for none yet (read as the identity's snapshot).

        Raises:
            RuntimeError: :meth:`begin` was not called.
            OSError: the journal cannot be written (full disk, read-only volume).
        """
        if self._identity is None:
            raise RuntimeError("Journal.begin() must run before save()")
        if self._head is None or snapshots != self._snapshots:  # rebuilt after a refresh
            state = {
                "format": FORMAT,
                "version": VERSION,
                "session": self._session,
                "identity": self._identity,
            }
            head = json.dumps(state, separators=(",", ":"))[:-1]
            if snapshots is not None:
                head += f',"snapshots":{snapshots}'
            self._head, self._snapshots = head + ',"books":', snapshots
        text = books if isinstance(books, str) else json.dumps(books, separators=(",", ":"))
        self._write(self.state_file, f"{self._head}{text}}}".encode())

    def _write(self, target: Path, data: bytes) -> None:
        """Write ``data`` to ``target`` atomically: temporary file, fsync, rename, fsync folder."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        folder = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _remove_temporaries(self) -> None:
        for tmp in self.path.glob(".*.tmp"):  # a write a crash interrupted: the old file stands
            tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete the journal (a clean stop: the session ends, nothing is to be continued)."""
        for path in (self.state_file, self.key_file):
            path.unlink(missing_ok=True)
        self._identity = self._session = self._head = None
        log.info("journal %s cleared (clean stop)", self.path)


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Which identity fields differ, for the log (no secrets in an identity)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "no difference"
