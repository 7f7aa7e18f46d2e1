"""Reused shared-memory segments for a DataLoader worker's batch groups.

A fresh shared-memory segment per group (:func:`feeder.torch.handover.pack`) costs
more than the copy into it: the worker creates the segment and faults in (and the
kernel zeroes) every page of it, and the main process receives a file descriptor and
maps and faults in every page again — ~4.3 ms for a 6 MiB group here, against
~0.9 ms for the copy alone. A worker's :class:`Ring` keeps its segments instead and
writes the next group into one the main process has released; the main process maps
each segment once, as the first group in it is received (:func:`receive`).

*Released* is exact, never a guess: in the main process a group's tensors are views
of one storage made with ``torch.from_numpy`` of a numpy array over the segment, and
torch holds that array until the storage's last view (a batch, or any slice or view a
training step kept of it) is freed; a ``weakref.finalize`` on the array then marks the
segment free on the worker's *board* (one shared byte per segment). A batch kept
forever only keeps its segment; the worker makes another (up to
:data:`MAX_SEGMENTS`, then it falls back to a fresh segment per group, as before).

Segments are files in ``/dev/shm`` (``icefeed-handover-<pid>-<random>-<n>``, mode
0600, created with ``O_EXCL``), named so the main process can map them; it maps only
files of its own user with no access for others. The worker removes its files when it exits;
when an iteration ends, the main process drops its mappings of workers that are gone
and removes their files if they are still there (a worker that was killed). Without
``/dev/shm`` :func:`available` is False and the fresh-segment path is used.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing.util
import os
import secrets
import threading
import weakref
from dataclasses import dataclass

import numpy as np

SHM_DIR = "/dev/shm"
#: segments one worker keeps at most (beyond: a fresh segment per group)
MAX_SEGMENTS = 16
_PREFIX = "icefeed-handover-"


def available() -> bool:
    """Whether this machine has a ``/dev/shm`` to keep segments in."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


@dataclass(frozen=True)
class SegmentRef:
    """Where a group lies: segment ``index`` of a worker's ring (``path``, at least
    ``size`` bytes), whose board is ``board``."""

    path: str
    size: int
    board: str
    index: int


class _Segment:
    """A segment file this process made (``O_EXCL``: never one that was there before),
    kept open so that growing it never opens a path again."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self._fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        self.size = 0
        self.map: mmap.mmap | None = None
        self.grow(size)

    def grow(self, size: int) -> None:
        if size > self.size:
            os.ftruncate(self._fd, size)
            self.map = mmap.mmap(self._fd, size)
            self.size = size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class Ring:
    """One worker's segments and their board (used by the worker's one thread)."""

    def __init__(self, directory: str = SHM_DIR, max_segments: int = MAX_SEGMENTS) -> None:
        self._max = max_segments
        # pid first (the main process removes the files of workers that are gone), then
        # a random part: names nobody can guess and create first
        self._stem = os.path.join(directory, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
        self.board_path = f"{self._stem}-board"
        self._board_seg = _Segment(self.board_path, max_segments)
        assert self._board_seg.map is not None
        self._board = np.frombuffer(self._board_seg.map, dtype=np.uint8, count=max_segments)
        self._segments: list[_Segment] = []
        # run at a worker's exit (multiprocessing children skip atexit)
        multiprocessing.util.Finalize(self, self.remove, exitpriority=10)

    def take(self, size: int) -> tuple[SegmentRef, np.ndarray] | None:
        """A released segment of at least ``size`` bytes (grown if needed), marked busy,
        with a writable view of its first ``size`` bytes; None when every one of the
        :data:`MAX_SEGMENTS` is still held by the main process."""
        free = [i for i in range(len(self._segments)) if self._board[i] == 0]
        if free:
            index = free[0]
            segment = self._segments[index]
        elif len(self._segments) < self._max:
            index = len(self._segments)
            segment = _Segment(f"{self._stem}-{index}", size)
            self._segments.append(segment)
        else:
            return None
        segment.grow(size)
        assert segment.map is not None
        self._board[index] = 1
        ref = SegmentRef(segment.path, segment.size, self.board_path, index)
        return ref, np.frombuffer(segment.map, dtype=np.uint8, count=size)

    @property
    def segments(self) -> int:
        """Segments made so far."""
        return len(self._segments)

    def remove(self) -> None:
        """Remove this ring's files (mappings stay valid where they are held)."""
        for segment in [self._board_seg, *self._segments]:
            segment.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment.path)


_ring: Ring | None = None


def worker_ring() -> Ring:
    """This process's ring (made on first use)."""
    global _ring
    if _ring is None:
        _ring = Ring()
    return _ring


class _Mapped:
    """The main process's mappings of the worker segments it received (by path)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maps: dict[str, mmap.mmap] = {}

    def get(self, path: str, size: int) -> mmap.mmap:
        with self._lock:
            held = self._maps.get(path)
            if held is None or len(held) < size:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
                try:
                    info = os.fstat(fd)
                    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                        raise PermissionError(
                            f"{path} is not a hand-over segment of this user's DataLoader "
                            f"worker (owner uid {info.st_uid}, mode {info.st_mode & 0o777:o}); "
                            "refusing to read batches from it"
                        )
                    held = self._maps[path] = mmap.mmap(fd, max(size, info.st_size))
                finally:
                    os.close(fd)
            return held

    def forget_gone(self) -> None:
        """Drop the mappings of workers that are gone (those still viewed stay mapped
        until released) and remove their files if they are still there."""
        with self._lock:
            gone = [p for p in self._maps if not _alive(_pid_of(p))]
            for path in gone:
                del self._maps[path]
        for path in gone:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __len__(self) -> int:
        return len(self._maps)


def _pid_of(path: str) -> int:
    return int(os.path.basename(path)[len(_PREFIX) :].split("-", 1)[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_mapped = _Mapped()


def receive(ref: SegmentRef) -> None:
    """Map the segment ``ref`` names and its board as the group is received (unpickled
    from the DataLoader's queue, before the worker's end-of-data mark behind it): torch
    tells a worker to exit on that mark even while groups it sent earlier wait to be
    yielded in order, and the exiting worker removes its files; a mapping made here
    outlives them."""
    _mapped.get(ref.path, ref.size)
    _mapped.get(ref.board, ref.index + 1)


def attach(ref: SegmentRef, size: int) -> np.ndarray:
    """The first ``size`` bytes of the segment ``ref`` names, as a numpy array that
    marks the segment free on its board once nothing refers to it any more (hand it to
    ``torch.from_numpy`` and keep no other reference)."""
    array = np.frombuffer(_mapped.get(ref.path, ref.size), dtype=np.uint8, count=size)
    board = _mapped.get(ref.board, ref.index + 1)  # the whole board
    weakref.finalize(array, _release, board, ref.index)
    return array


def release(ref: SegmentRef) -> None:
    """Mark segment ``ref`` free on its board (a group received and never attached)."""
    with contextlib.suppress(OSError, ValueError, IndexError):  # its worker is gone
        _release(_mapped.get(ref.board, ref.index + 1), ref.index)


def _release(board: mmap.mmap, index: int) -> None:
    with contextlib.suppress(ValueError, IndexError):  # the board was closed
        board[index] = 0


def forget_gone() -> None:
    """End of an iteration in the main process: drop the mappings of workers that are
    gone and remove their leftover files."""
    _mapped.forget_gone()


def mapped() -> int:
    """Segments (and boards) the main process holds mapped now."""
    return len(_mapped)
