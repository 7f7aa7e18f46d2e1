"""Turn one SlicePlan into an Arrow table, counting the bytes read from table storage.

A data node builds one :class:`SliceSource` from the coordinator's ``register``
answer (metadata location, FileIO properties, snapshot, filter, columns) and
asks it for slices by plan. Projection, row filter and schema evolution follow
pyiceberg's own Arrow reader:

- a slice of a file with delete files (always the whole file) is read with
  ``ArrowScan`` on that file's ``FileScanTask``, so position/equality deletes
  are honoured exactly as pyiceberg does;
- a row-group slice reads only those row groups (``make_fragment(row_groups=)``)
  and converts them with the same pyiceberg steps ``ArrowScan`` uses per file.

Slices have the Arrow schema of the projection in
:attr:`jobs.schema_mapping.ArrowLayout.READ` (pyiceberg's reader types), whichever
path read them. Every byte comes through :class:`CountingFileIO`, which is how "storage is read
once" is measured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from feeder.protocol.slice_plan import SlicePlan
from jobs.errors import FeederError
from jobs.schema_mapping import ArrowLayout, iceberg_to_arrow

if TYPE_CHECKING:
    from pyiceberg.io import FileIO, InputFile, OutputFile
    from pyiceberg.table import FileScanTask, Table

log = logging.getLogger(__name__)


class _CountingReader:
    """A Python file object over a pyarrow stream that adds every byte read to a counter."""

    def __init__(self, inner: Any, counter: ByteCounter) -> None:
        self._inner = inner
        self._counter = counter
        self.closed = False

    def read(self, nbytes: int = -1) -> bytes:
        data = self._inner.read() if nbytes is None or nbytes < 0 else self._inner.read(nbytes)
        self._counter.add(len(data))
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def size(self) -> int:
        return int(self._inner.size())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._inner.close()


class ByteCounter:
    """A thread-safe running total of bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        """Add ``n`` bytes."""
        with self._lock:
            self.total += n


def counting_file_io(inner: FileIO, counter: ByteCounter) -> FileIO:
    """Return a FileIO that delegates to ``inner`` and counts every byte read into ``counter``."""
    from pyiceberg.io import FileIO, InputFile

    class CountingInputFile(InputFile):
        def __init__(self, wrapped: InputFile) -> None:
            super().__init__(wrapped.location)
            self._wrapped = wrapped

        def __len__(self) -> int:
            return len(self._wrapped)

        def exists(self) -> bool:
            return self._wrapped.exists()

        def open(self, seekable: bool = True) -> Any:
            return pa.PythonFile(_CountingReader(self._wrapped.open(seekable), counter), mode="r")

    class CountingFileIO(FileIO):
        def __init__(self) -> None:
            super().__init__(inner.properties)

        def new_input(self, location: str) -> InputFile:
            return CountingInputFile(inner.new_input(location))

        def new_output(self, location: str) -> OutputFile:
            return inner.new_output(location)

        def delete(self, location: str | InputFile | OutputFile) -> None:
            inner.delete(location)

    return CountingFileIO()


@dataclass(frozen=True)
class Materialized:
    """One materialised slice and the bytes read from table storage to make it."""

    table: pa.Table
    storage_bytes: int


class SliceSource:
    """Reads slices of one pinned snapshot of one table, with one projection and filter."""

    def __init__(
        self,
        table: Table,
        *,
        snapshot_id: int | None,
        row_filter: str | None,
        columns: Sequence[str] | None,
    ) -> None:
        from pyiceberg.expressions import AlwaysTrue

        self.table = table
        self.scan = table.scan(
            row_filter=row_filter if row_filter else AlwaysTrue(),
            selected_fields=tuple(columns) if columns else ("*",),
            snapshot_id=snapshot_id,
        )
        self.snapshot_id = snapshot_id
        self.storage = ByteCounter()
        self._io = counting_file_io(table.io, self.storage)
        self._tasks: dict[str, FileScanTask] | None = None
        self._lock = threading.Lock()
        # one slice at a time per source: the counter's growth during a call is that call's
        self._materialize_lock = threading.Lock()

    @classmethod
    def from_metadata(
        cls,
        metadata_location: str,
        *,
        io_properties: Mapping[str, str] | None,
        snapshot_id: int | None,
        row_filter: str | None,
        columns: Sequence[str] | None,
    ) -> SliceSource:
        """Open the table from its metadata file (what a data node gets at ``register``)."""
        from pyiceberg.table import StaticTable

        table = StaticTable.from_metadata(metadata_location, properties=dict(io_properties or {}))
        return cls(table, snapshot_id=snapshot_id, row_filter=row_filter, columns=columns)

    def schema(self) -> pa.Schema:
        """Return the Arrow schema every slice of this source has.

        Returns:
            The projection in :attr:`jobs.schema_mapping.ArrowLayout.READ`.
        """
        return iceberg_to_arrow(self.scan.projection(), ArrowLayout.READ)

    def _task(self, path: str) -> FileScanTask:
        with self._lock:
            if self._tasks is None:
                self._tasks = {t.file.file_path: t for t in self.scan.plan_files()}
            task = self._tasks.get(path)
        if task is None:
            raise FeederError(f"data file {path!r} is not part of snapshot {self.snapshot_id}")
        return task

    def materialize(self, plan: SlicePlan) -> Materialized:
        """Read ``plan``'s rows (projected, filtered, deletes applied) into one Arrow table.

        Raises FeederError if the plan's file is not in the pinned snapshot.
        """
        task = self._task(plan.file_path)
        schema = self.schema()
        with self._materialize_lock:
            before = self.storage.total
            if task.delete_files or plan.has_deletes:
                table = self._arrow_scan().to_table([task])
            else:
                batches = [b.cast(schema) for b in self._row_group_batches(task, plan.row_groups)]
                table = pa.Table.from_batches(batches, schema=schema)
            spent = self.storage.total - before
        if table.schema != schema:
            table = table.cast(schema)
        log.info(
            "materialised slice %d: %d rows, %d storage bytes", plan.slice_id, len(table), spent
        )
        return Materialized(table=table, storage_bytes=spent)

    def _arrow_scan(self) -> Any:
        from pyiceberg.io.pyarrow import ArrowScan

        return ArrowScan(
            self.scan.table_metadata,
            self._io,
            self.scan.projection(),
            self.scan.row_filter,
            self.scan.case_sensitive,
        )

    def _row_group_batches(
        self, task: FileScanTask, row_groups: Sequence[int]
    ) -> Iterator[pa.RecordBatch]:
        """Mirror pyiceberg's per-file read (``_task_to_record_batches``) for some row groups."""
        import pyarrow.dataset as ds
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.expressions.visitors import bind, translate_column_names
        from pyiceberg.io.pyarrow import (
            _get_column_projection_values,
            _to_requested_schema,
            expression_to_pyarrow,
            pyarrow_to_schema,
        )
        from pyiceberg.schema import prune_columns

        scan = self._arrow_scan()
        metadata = self.scan.table_metadata
        projected_schema = self.scan.projection()
        downcast = metadata.format_version <= 2
        fmt = ds.ParquetFileFormat()
        with self._io.new_input(task.file.file_path).open() as fin:
            fragment = fmt.make_fragment(fin, row_groups=list(row_groups))
            physical_schema = fragment.physical_schema
            file_schema = pyarrow_to_schema(
                physical_schema,
                metadata.name_mapping(),
                downcast_ns_timestamp_to_us=downcast,
                format_version=metadata.format_version,
            )
            missing = _get_column_projection_values(
                task.file,
                projected_schema,
                metadata.schema(),
                metadata.specs().get(task.file.spec_id),
                file_schema.field_ids,
            )
            pyarrow_filter = None
            bound_filter = scan._bound_row_filter
            if bound_filter is not AlwaysTrue():
                translated = translate_column_names(
                    bound_filter,
                    file_schema,
                    case_sensitive=self.scan.case_sensitive,
                    projected_field_values=missing,
                )
                bound_file_filter = bind(
                    file_schema, translated, case_sensitive=self.scan.case_sensitive
                )
                pyarrow_filter = expression_to_pyarrow(bound_file_filter, file_schema)
            file_project_schema = prune_columns(
                file_schema, scan._projected_field_ids, select_full_types=False
            )
            scanner = ds.Scanner.from_fragment(
                fragment=fragment,
                schema=physical_schema,
                filter=pyarrow_filter,
                columns=[col.name for col in file_project_schema.columns],
            )
            for batch in scanner.to_batches():
                if batch.num_rows == 0:
                    continue
                yield _to_requested_schema(
                    projected_schema,
                    file_project_schema,
                    batch,
                    downcast_ns_timestamp_to_us=downcast,
                    projected_missing_fields=missing,
                    allow_timestamp_tz_mismatch=True,
                )
