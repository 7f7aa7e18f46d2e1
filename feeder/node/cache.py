"""The data node's slice cache: one Arrow IPC file per slice, served memory-mapped.

Files are written atomically (a temporary name in the same directory, fsync,
rename), so a crash never leaves a half file under a slice's name. Reads map
the file (``pa.memory_map``): record batches point into the page cache, so a
node's private memory stays small however large the cache is. Sequential
ranges are zero-copy slices; shuffled ranges are gathered in chunks of
``batch_rows`` rows, a few chunks ahead on a small thread pool (the gathers
release the GIL). Next to each IPC file lies a row-major copy of the slice's
fixed-width columns (:mod:`feeder.node.rowstore`, ``slice-<id>.<token>.rows``,
named by a token in the IPC file's schema metadata, so a copy can never be
paired with another version of its slice): shuffled reads gather those
columns from it, one random access per row instead of one per row and column
(~26 M rows/s a thread of 68-byte rows here, against ~15 M for ``take`` on
the IPC file), and the other columns with ``take``.

Each slice is written as ONE record batch: ``take`` on a single contiguous
array is several times faster than on a chunked one (whose cost grows with
the number of chunks per call), and sequential reads re-cut it into batches
of ``batch_rows`` rows without copying.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from feeder.node.rowstore import RowLayout, gather, map_rows, row_columns, worth_it, write_rows
from feeder.node.settings import DEFAULT_BATCH_ROWS
from feeder.protocol.chunking import Chunking
from feeder.protocol.slice_rows import (
    ROWS_TOKEN_KEY,
    check_range,
    cut,
    read_cache_file,
)
from feeder.protocol.slice_rows import select as select_columns
from jobs.errors import FeederError

log = logging.getLogger(__name__)

#: gather threads per node: ``take`` is memory-bound, so a couple per core at most
DEFAULT_TAKE_THREADS = max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class CachedSlice:
    """A slice on disk: its IPC file, exact row count and file size (plus its row copy's),
    and the CRC-32 of the IPC file (kept beside it as ``slice-<id>.arrow.crc32``)."""

    slice_id: int
    path: Path
    num_rows: int
    nbytes: int
    rows_nbytes: int = 0
    checksum: int | None = None


class SliceUnreadable(FeederError):
    """A cached slice's files are no longer what was written (truncated, replaced, corrupt).

    The node drops the entry and materialises the slice again.
    """


class SliceCache:
    """Arrow IPC files under ``root``, one per slice id; thread-safe.

    ``row_copy=False`` writes no row-major copies (half the disk for all-fixed-width
    tables; shuffled reads then gather every column with ``take``). Copies already on
    disk are still used.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        take_threads: int = DEFAULT_TAKE_THREADS,
        row_copy: bool = True,
    ):
        self.root = Path(root)
        self.row_copy = row_copy
        self.root.mkdir(parents=True, exist_ok=True)
        self.take_threads = max(1, take_threads)
        self._lock = threading.Lock()
        self._entries: dict[int, CachedSlice] = {}
        self._open: dict[int, pa.Table] = {}
        self._rows: dict[int, tuple[RowLayout, np.ndarray] | None] = {}
        self._fds: dict[int, list[int]] = {}  # files held open while mapped (see _check_sizes)
        self._pool: ThreadPoolExecutor | None = None

    def path(self, slice_id: int) -> Path:
        """Return the file a slice is cached in."""
        return self.root / f"slice-{slice_id:08d}.arrow"

    def checksum_path(self, slice_id: int) -> Path:
        """Return the file holding the CRC-32 of a slice's IPC file (hex)."""
        return self.root / f"slice-{slice_id:08d}.arrow.crc32"

    def rows_path(self, slice_id: int, token: str) -> Path:
        """Return the file of a slice's row-major copy named by ``token``."""
        return self.root / f"slice-{slice_id:08d}.{token}.rows"

    def write(self, slice_id: int, table: pa.Table) -> CachedSlice:
        """Write ``table`` as slice ``slice_id`` atomically and return its entry.

        The row-major copy of its fixed-width columns is written first; the IPC
        file, renamed into place last, is the commit point and names the copy.
        """
        final = self.path(slice_id)
        tmp = self.root / f".tmp-{slice_id:08d}-{uuid.uuid4().hex}"
        batch = table.combine_chunks().to_batches()[0] if table.num_rows else None
        layout = row_columns(batch) if batch is not None and self.row_copy else None
        schema = table.schema
        rows_file: Path | None = None
        try:
            if layout is not None and batch is not None:
                token = uuid.uuid4().hex
                rows_file = self.rows_path(slice_id, token)
                rows_tmp = tmp.with_suffix(".rows")
                try:
                    write_rows(batch, layout, rows_tmp)
                    os.replace(rows_tmp, rows_file)
                finally:
                    rows_tmp.unlink(missing_ok=True)
                schema = schema.with_metadata({**(schema.metadata or {}), ROWS_TOKEN_KEY: token})
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                if batch is not None:
                    writer.write_batch(batch.replace_schema_metadata(schema.metadata))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            checksum = file_checksum(tmp)
            crc_tmp = tmp.with_suffix(".crc32")
            try:
                crc_tmp.write_text(f"{checksum:08x}\n")
                os.replace(crc_tmp, self.checksum_path(slice_id))
            finally:
                crc_tmp.unlink(missing_ok=True)
            os.replace(tmp, final)
        except BaseException:
            if rows_file is not None:
                rows_file.unlink(missing_ok=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.root)
        self._remove_stale_rows(slice_id, keep=rows_file)
        entry = CachedSlice(
            slice_id,
            final,
            table.num_rows,
            final.stat().st_size,
            rows_file.stat().st_size if rows_file is not None else 0,
            checksum,
        )
        with self._lock:
            self._entries[slice_id] = entry
            self._unmap(slice_id)
        log.debug("cached slice %d: %d rows, %d bytes", slice_id, entry.num_rows, entry.nbytes)
        return entry

    def _remove_stale_rows(self, slice_id: int, keep: Path | None) -> None:
        """Delete row copies of ``slice_id`` other than ``keep`` (from earlier versions)."""
        for path in self.root.glob(f"slice-{slice_id:08d}.*.rows"):
            if path != keep:
                path.unlink(missing_ok=True)

    def adopt_existing(self) -> list[CachedSlice]:
        """Register the slice files already under ``root`` whose checksum still holds.

        For a node that reuses a cache dir. Each IPC file is read once to verify its
        CRC-32 against ``slice-<id>.arrow.crc32``; a file that fails (flipped bits,
        truncated, or no checksum) is deleted, not adopted. Row copies that no IPC
        file names (left by a crash mid-write) are deleted.

        Returns:
            The adopted entries.
        """
        found = []
        named: set[Path | None] = set()  # the row copies the IPC files name
        for path in sorted(self.root.glob("slice-*.arrow")):
            slice_id = int(path.stem.split("-")[1])
            checksum = self._verified_checksum(slice_id, path)
            if checksum is None:
                self._delete_files(slice_id)
                continue
            with pa.memory_map(str(path), "r") as source:  # batches map the file: no copy
                reader = pa.ipc.open_file(source)
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
                token = (reader.schema.metadata or {}).get(ROWS_TOKEN_KEY)
            rows_file = self.rows_path(slice_id, token.decode()) if token else None
            rows_nbytes = rows_file.stat().st_size if rows_file and rows_file.exists() else 0
            size = path.stat().st_size
            found.append(CachedSlice(slice_id, path, rows, size, rows_nbytes, checksum))
            named.add(rows_file)
        for copy in self.root.glob("slice-*.rows"):  # stale, or of a write that never committed
            if copy not in named:
                copy.unlink(missing_ok=True)
        with self._lock:
            for entry in found:
                self._entries[entry.slice_id] = entry
        return found

    def _verified_checksum(self, slice_id: int, path: Path) -> int | None:
        """The IPC file's CRC-32 if it matches the recorded one; None (and a warning) if not."""
        try:
            recorded = int(self.checksum_path(slice_id).read_text().strip(), 16)
            actual = file_checksum(path)
        except (OSError, ValueError) as exc:
            log.warning("cached slice %d has no readable checksum (%s): dropped", slice_id, exc)
            return None
        if actual != recorded:
            log.warning(
                "cached slice %d fails its checksum (%08x, recorded %08x): dropped",
                slice_id,
                actual,
                recorded,
            )
            return None
        return actual

    def drop(self, slice_id: int) -> None:
        """Forget slice ``slice_id`` and delete its files (to materialise it again)."""
        with self._lock:
            self._entries.pop(slice_id, None)
            self._unmap(slice_id)
        self._delete_files(slice_id)

    def _delete_files(self, slice_id: int) -> None:
        self.path(slice_id).unlink(missing_ok=True)
        self.checksum_path(slice_id).unlink(missing_ok=True)
        self._remove_stale_rows(slice_id, keep=None)

    def _unmap(self, slice_id: int) -> None:
        """Drop the mapping and held files of ``slice_id`` (caller holds the lock)."""
        self._open.pop(slice_id, None)
        self._rows.pop(slice_id, None)
        for fd in self._fds.pop(slice_id, []):
            os.close(fd)

    def _forget_unreadable(self, slice_id: int) -> None:
        """Forget an unreadable slice and delete its files (caller holds the lock), so the
        next :meth:`get` is None and the node materialises it again."""
        self._entries.pop(slice_id, None)
        self._unmap(slice_id)
        self._delete_files(slice_id)

    def _check_sizes(self, slice_id: int, entry: CachedSlice) -> None:
        """Raise SliceUnreadable (the slice forgotten) if a held file no longer has its
        written size (caller holds the lock).

        Touching a mapped page past a truncated file's end is SIGBUS, which kills the
        process: every read checks the held files first, so a file truncated between
        reads is dropped and materialised again instead.
        """
        expected = [entry.nbytes] + ([entry.rows_nbytes] if entry.rows_nbytes else [])
        for fd, size in zip(self._fds.get(slice_id, []), expected, strict=False):
            actual = os.fstat(fd).st_size
            if actual != size:
                self._forget_unreadable(slice_id)
                raise SliceUnreadable(
                    f"cached slice {slice_id} is {actual} bytes on disk, {size} were written"
                )

    def get(self, slice_id: int) -> CachedSlice | None:
        """Return the entry of a cached slice, or None."""
        with self._lock:
            return self._entries.get(slice_id)

    def entries(self) -> list[CachedSlice]:
        """Return every cached slice, by id."""
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    def total_bytes(self) -> int:
        """Return the bytes of all cached files (IPC files and row copies)."""
        with self._lock:
            return sum(e.nbytes + e.rows_nbytes for e in self._entries.values())

    def open(self, slice_id: int) -> pa.Table:
        """Return slice ``slice_id`` as a table backed by the memory-mapped IPC file.

        No data is copied into RAM; the mapping is kept open for later reads.
        Raises FeederError if the slice is not cached.
        """
        with self._lock:
            entry = self._entries.get(slice_id)
            if entry is None:
                raise FeederError(f"slice {slice_id} is not cached on this node")
            table = self._open.get(slice_id)
            if table is not None:
                self._check_sizes(slice_id, entry)
                return table
            try:
                self._fds[slice_id] = [os.open(self.path(slice_id), os.O_RDONLY)]
                self._check_sizes(slice_id, entry)  # before mapping
                source = pa.memory_map(str(self.path(slice_id)), "r")
                table, token = read_cache_file(source)
            except (OSError, pa.ArrowException) as exc:
                self._forget_unreadable(slice_id)
                raise SliceUnreadable(f"cached slice {slice_id} cannot be read: {exc}") from exc
            self._open[slice_id] = table
            self._rows[slice_id] = self._map_rows(slice_id, token, table, entry)
            return table

    def _map_rows(
        self, slice_id: int, token: bytes | None, table: pa.Table, entry: CachedSlice
    ) -> tuple[RowLayout, np.ndarray] | None:
        if token is None or not entry.rows_nbytes:
            return None
        layout = row_columns(table)
        if layout is None:
            return None
        path = self.rows_path(slice_id, token.decode())
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None  # gather with take instead
        rows = map_rows(path, layout, table.num_rows)  # None (logged) for a damaged copy
        if rows is None or os.fstat(fd).st_size != entry.rows_nbytes:
            os.close(fd)
            return None
        self._fds[slice_id].append(fd)
        return layout, rows

    def read(
        self,
        slice_id: int,
        *,
        permutation: np.ndarray | None,
        start: int,
        stop: int,
        columns: Sequence[str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        chunking: Chunking | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield positions ``[start, stop)`` of the slice in the order ``permutation`` gives.

        ``permutation=None`` is table order (zero-copy slices of the mapped file);
        otherwise position ``p`` is row ``permutation[p]``, gathered with ``take``.
        Batches hold at most ``batch_rows`` rows, cut on the consumer's grid when
        ``chunking`` is given (:meth:`Chunking.sizes`). Raises FeederError for a
        range beyond the slice or an unknown column.
        """
        table = self.select(self.open(slice_id), columns)
        check_range(slice_id, table.num_rows, start, stop)
        sizes = (chunking or Chunking()).sizes(stop - start, batch_rows)
        if permutation is None:
            yield from cut(table.slice(start, stop - start), sizes)
            return
        if len(permutation) != table.num_rows:
            raise FeederError(f"permutation of {len(permutation)} rows for slice {slice_id}")
        with self._lock:
            rows = self._rows.get(slice_id)
        take = _take if rows is None else _row_gatherer(*rows, table)
        yield from self._gather(take, table, permutation[start:stop], sizes)

    def _gather(
        self,
        take: Callable[[pa.Table, np.ndarray], pa.Table],
        table: pa.Table,
        indices: np.ndarray,
        sizes: Sequence[int],
    ) -> Iterator[pa.RecordBatch]:
        """Gather ``indices`` in chunks of ``sizes`` on the pool, ``take_threads + 1`` in flight."""
        pool = self._executor()
        pending: deque[Future[pa.Table]] = deque()
        lo = 0
        for size in sizes:
            pending.append(pool.submit(take, table, indices[lo : lo + size]))
            lo += size
            if len(pending) > self.take_threads:
                yield from pending.popleft().result().to_batches()
        while pending:
            yield from pending.popleft().result().to_batches()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.take_threads, thread_name_prefix="take")
            return self._pool

    def close(self) -> None:
        """Stop the gather threads and drop the mappings (files stay on disk)."""
        with self._lock:
            pool, self._pool = self._pool, None
            for slice_id in list(self._fds):
                self._unmap(slice_id)
            self._open.clear()
            self._rows.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def select(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
        """Project ``table`` to ``columns`` (None: all); raises FeederError for unknown names."""
        return select_columns(table, columns)

    def clear(self) -> None:
        """Forget and delete every cached slice."""
        self.close()
        with self._lock:
            self._entries.clear()
            self._open.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def _take(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """Rows ``indices`` of ``table``, gathered column by column."""
    return table.take(pa.array(indices))


def _row_gatherer(
    layout: RowLayout, rows: np.ndarray, table: pa.Table
) -> Callable[[pa.Table, np.ndarray], pa.Table]:
    """A gather for ``table``'s columns: row columns from the mapped row copy when that
    pays (:func:`feeder.node.rowstore.worth_it`), the others with ``take``."""
    names = table.schema.names
    if not worth_it(layout, names):
        return _take
    from_rows = [name for name in names if name in layout.fields]
    others = [name for name in names if name not in layout.fields]

    def take(selected: pa.Table, indices: np.ndarray) -> pa.Table:
        arrays: dict[str, pa.Array | pa.ChunkedArray] = gather(rows, layout, indices, from_rows)
        if others:
            rest = selected.select(others).take(pa.array(indices))
            arrays.update(zip(others, rest.columns, strict=True))
        return pa.Table.from_arrays([arrays[name] for name in names], schema=selected.schema)

    return take


def file_checksum(path: Path) -> int:
    """Return the CRC-32 of the file at ``path`` (read in 8 MiB blocks)."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(8 * 1024 * 1024):
            crc = zlib.crc32(block, crc)
    return crc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
