"""A data node's cache folder: claimed with a lock while the node lives, swept once it is dead.

Each node caches under ``<cache root>/icefeed-node-<node id>-<pid>/``. The folder
holds ``.owner.lock``, ``flock``-ed by the node for its whole life; the kernel
releases the lock when the process ends, however it ends (SIGKILL, OOM kill,
a lost executor). So at start a node sweeps every sibling folder whose lock it
can take: its owner is dead. A live node's folder is never swept — its lock is
held — and a folder is created under a temporary name and renamed into place
only once locked, so a sweeper never sees a live folder unlocked. Folders
without a lock file are left alone (not ours to judge).

A dead folder of the *same* feeder session (its ``.session`` tag, a one-way
digest of the session's ticket key) holds slices of the same plan: a starting
node moves its slice files into its own folder before deleting the rest, and
adopts them after verifying their checksums (``SliceCache.adopt_existing``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER_PREFIX = "icefeed-node-"
LOCK_NAME = ".owner.lock"
SESSION_NAME = ".session"


def session_tag(ticket_key: bytes) -> str:
    """Return the tag naming a session's cache folders (reveals nothing of the key)."""
    return hashlib.sha256(b"icefeed-cache-folder\0" + ticket_key).hexdigest()[:32]


@dataclass
class ClaimedFolder:
    """A cache folder and the open, locked file that proves its owner lives."""

    path: Path
    lock_fd: int

    def release(self) -> None:
        """Delete the folder, then drop the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.lock_fd)


def claim_folder(parent: Path, name: str, tag: str | None = None) -> ClaimedFolder:
    """Create ``parent/name`` with its lock held by this process.

    Args:
        parent: the cache root.
        name: the folder's name (``icefeed-node-<node id>-<pid>``).
        tag: the session's :func:`session_tag` (None: no adoption by later nodes).

    Returns:
        The claimed folder; call :meth:`ClaimedFolder.release` when done.

    Raises:
        OSError: the folder cannot be created or locked.
    """
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".claiming-{uuid.uuid4().hex}"
    staging.mkdir()
    if tag is not None:
        (staging / SESSION_NAME).write_text(tag)
    fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = parent / name
        os.rename(staging, final)
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ClaimedFolder(final, fd)


def sweep_dead_folders(
    parent: Path, *, adopt_into: Path | None = None, tag: str | None = None
) -> list[Path]:
    """Delete every ``icefeed-node-*`` folder under ``parent`` whose owner process is dead.

    Args:
        parent: the cache root.
        adopt_into: move the slice files of dead folders tagged ``tag`` here first.
        tag: this session's :func:`session_tag`.

    Returns:
        The folders deleted.
    """
    swept: list[Path] = []
    if not parent.is_dir():
        return swept
    for folder in sorted(parent.glob(f"{FOLDER_PREFIX}*")):
        lock = folder / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # no lock file: not a folder this code claimed
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner lives
            if adopt_into is not None and tag is not None and _tag_of(folder) == tag:
                _move_slices(folder, adopt_into)
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder)
        finally:
            os.close(fd)
    if swept:
        log.info("swept %d cache folder(s) of dead data nodes under %s", len(swept), parent)
    return swept


def _tag_of(folder: Path) -> str | None:
    try:
        return (folder / SESSION_NAME).read_text().strip()
    except OSError:
        return None


def _move_slices(source: Path, target: Path) -> None:
    """Move ``source``'s slice files (IPC, checksum, row copy) that ``target`` lacks."""
    for path in source.glob("slice-*"):
        if not (target / path.name).exists():
            try:
                os.rename(path, target / path.name)
            except OSError as exc:
                log.warning("could not adopt %s: %s", path, exc)
