"""Task side of the writer: Arrow batches → Parquet data files → DataFile metadata.

Runs inside Spark's Python workers (``mapInArrow``). Everything a task needs comes
in a picklable :class:`TaskPlan` built on the driver — a worker never loads the
catalog or reads driver environment variables. A task writes one Parquet file per
partition at a time through the table's FileIO, rolls to a new file when one passes
``target_file_bytes``, and returns one JSON line per file (:class:`DataFileInfo`):
rows never travel back to the driver.

Which columns get a Parquet dictionary is decided per file from a sample of its
first batch (:func:`dictionary_columns`): near-unique columns skip it, which
roughly halves the encoding CPU on id/measurement/timestamp columns and makes
the files smaller too.

Files land under the write's own prefix (:mod:`jobs.staging`); the driver commits
them where they are (object stores cannot rename cheaply) or deletes the prefix.
A task that fails deletes the files it wrote before re-raising.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.staging import delete_quietly

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.io import FileIO, OutputStream
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema

log = logging.getLogger(__name__)

#: Name of the one column of the ``mapInArrow`` output.
METADATA_COLUMN = "data_file"
#: Rows buffered per partition before a row group is written (small slices of many
#: partitions would otherwise make tiny row groups).
MIN_ROW_GROUP_ROWS = 65_536
#: Upper bound of a row group, as Iceberg's ``write.parquet.row-group-limit`` default.
MAX_ROW_GROUP_ROWS = 1_048_576
#: Rows of a file's first batch sampled to decide which columns get a dictionary.
DICTIONARY_SAMPLE_ROWS = 16_384
#: Largest distinct/non-null ratio in that sample for which a dictionary is used.
DICTIONARY_MAX_DISTINCT = 0.5


@dataclass(frozen=True, kw_only=True)
class TaskPlan:
    """All a write task needs, built on the driver and shipped in the closure.

    ``schema_json`` / ``spec_json`` are the table's Iceberg schema and partition
    spec as JSON, ``prefix`` the write's own folder, ``parquet_options`` the
    ``pyarrow.parquet.ParquetWriter`` keyword arguments (codec, page sizes).
    ``io_properties`` may hold object-store credentials: never log a plan.
    """

    prefix: str
    io_properties: dict[str, str] = field(repr=False)
    schema_json: str
    spec_json: str
    target_file_bytes: int
    parquet_options: dict[str, Any]


class _RollingFile:
    """One partition's open Parquet file; rolls over at ``target_file_bytes``."""

    def __init__(
        self,
        *,
        io: FileIO,
        folder: str,
        partition: tuple[Any, ...],
        arrow_schema: pa.Schema,
        plan: TaskPlan,
        written: list[str],
    ) -> None:
        self._io = io
        self._folder = folder
        self._partition = partition
        self._schema = arrow_schema
        self._plan = plan
        self._written = written
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: Any = None
        self._stream: OutputStream | None = None
        self._path = ""
        self.finished: list[tuple[str, Any, int]] = []  # (path, parquet metadata, size)

    def add(self, batch: pa.RecordBatch, *, min_rows: int) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= min_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        if self._writer is None:
            self._path = f"{self._folder}/{uuid.uuid4().hex}.parquet"
            self._written.append(self._path)
            self._stream = self._io.new_output(self._path).create(overwrite=True)
            options = dict(self._plan.parquet_options)
            options.setdefault("use_dictionary", dictionary_columns(self._pending[0]))
            self._writer = pq.ParquetWriter(
                self._stream,
                self._schema,
                store_decimal_as_integer=True,
                **options,
            )
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        self._writer.write_table(table, row_group_size=MAX_ROW_GROUP_ROWS)
        self._pending = []
        self._pending_rows = 0
        assert self._stream is not None
        if self._stream.tell() >= self._plan.target_file_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._stream is not None
        size = self._stream.tell()
        self._stream.close()
        self.finished.append((self._path, self._writer.writer.metadata, size))
        self._writer = None
        self._stream = None

    def close(self) -> None:
        self._flush()
        self._close_file()

    def abandon(self) -> None:
        """Close without flushing (the task failed); the caller deletes the files."""
        self._pending = []
        if self._stream is not None:
            self._stream.close()
        self._writer = None
        self._stream = None

    @property
    def partition(self) -> tuple[Any, ...]:
        return self._partition


def dictionary_columns(batch: pa.RecordBatch) -> list[str]:
    """Names of the top-level primitive columns worth dictionary-encoding.

    Dictionary encoding pays for repetitive columns (categories, names, dates)
    and costs CPU *and* size on near-unique ones (ids, measurements, event
    times), where the writer tries it and falls back to plain per row group.
    A sample of the file's first batch decides: a column is dictionary-encoded
    when at most half of the sampled values are distinct.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    chosen = []
    sample = batch.slice(0, DICTIONARY_SAMPLE_ROWS)
    for arrow_field, column in zip(sample.schema, sample.columns, strict=True):
        kind = arrow_field.type
        if pa.types.is_nested(kind) or pa.types.is_boolean(kind):
            continue
        valid = len(column) - column.null_count
        if valid == 0 or pc.count_distinct(column).as_py() <= valid * DICTIONARY_MAX_DISTINCT:
            chosen.append(arrow_field.name)
    return chosen


def conform_batch(batch: pa.RecordBatch, arrow_schema: pa.Schema) -> pa.RecordBatch:
    """Give ``batch`` the file schema (field ids, Iceberg widths), casting only where needed.

    Spark's batches already have the right layout for almost every column; the
    exceptions are byte/short columns (→ int32), nested nullability flags and a
    non-UTC session time zone, all lossless casts.
    """
    import pyarrow as pa

    columns = []
    for column, target in zip(batch.columns, arrow_schema, strict=True):
        columns.append(column if column.type.equals(target.type) else column.cast(target.type))
    return pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


def _split_by_partition(
    batch: pa.RecordBatch, spec: PartitionSpec, schema: Schema
) -> list[tuple[tuple[Any, ...], pa.RecordBatch]]:
    """Split ``batch`` into (partition tuple, rows) pairs by the spec's transforms."""
    import pyarrow as pa

    keys = []
    for pfield in spec.fields:
        source = schema.find_field(pfield.source_id)
        column = batch.column(schema.find_column_name(pfield.source_id))
        keys.append(pfield.transform.pyarrow_transform(source.field_type)(column))
    names = [f"_p{i}" for i in range(len(keys))]
    key_table = pa.table([*keys, pa.array(range(batch.num_rows), pa.int64())], [*names, "_row"])
    groups = key_table.group_by(names, use_threads=False).aggregate([("_row", "list")])
    result = []
    rows = groups.column("_row_list")
    values = [groups.column(n).to_pylist() for n in names]
    for i in range(groups.num_rows):
        raw = [v[i] for v in values]
        partition = _partition_record(spec, schema, raw)
        result.append((partition, batch.take(rows[i].values)))
    return result


def _partition_record(spec: PartitionSpec, schema: Schema, raw: list[Any]) -> tuple[Any, ...]:
    from pyiceberg.partitioning import PartitionFieldValue, PartitionKey

    key = PartitionKey(
        field_values=[PartitionFieldValue(f, v) for f, v in zip(spec.fields, raw, strict=True)],
        partition_spec=spec,
        schema=schema,
    )
    record = key.partition
    return tuple(record[i] for i in range(len(record)))


def write_task(plan: TaskPlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function: write ``batches`` as data files, yield their metadata.

    Yields one batch with a ``data_file`` JSON string per written file (none when
    the task saw no rows). On any error it deletes the files it wrote and re-raises.
    """
    import pyarrow as pa
    from pyiceberg.io import load_file_io
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record

    from jobs.parquet_footers import file_info
    from jobs.schema_mapping import iceberg_to_arrow

    schema = Schema.model_validate_json(plan.schema_json)
    spec = PartitionSpec.model_validate_json(plan.spec_json)
    arrow_schema = iceberg_to_arrow(schema)
    io = load_file_io(plan.io_properties, plan.prefix)
    written: list[str] = []
    files: dict[tuple[Any, ...], _RollingFile] = {}

    def file_for(partition: tuple[Any, ...]) -> _RollingFile:
        rolling = files.get(partition)
        if rolling is None:
            folder = plan.prefix
            if spec.fields:
                folder = f"{plan.prefix}/{spec.partition_to_path(Record(*partition), schema)}"
            rolling = _RollingFile(
                io=io,
                folder=folder,
                partition=partition,
                arrow_schema=arrow_schema,
                plan=plan,
                written=written,
            )
            files[partition] = rolling
        return rolling

    try:
        for raw_batch in batches:
            if raw_batch.num_rows == 0:
                continue
            batch = conform_batch(raw_batch, arrow_schema)
            if spec.fields:
                for partition, part in _split_by_partition(batch, spec, schema):
                    file_for(partition).add(part, min_rows=MIN_ROW_GROUP_ROWS)
            else:
                file_for(()).add(batch, min_rows=1)
        for rolling in files.values():
            rolling.close()
        infos = [
            file_info(path, metadata, size, rolling.partition, schema)
            for rolling in files.values()
            for path, metadata, size in rolling.finished
        ]
    except BaseException:
        for rolling in files.values():
            rolling.abandon()
        delete_quietly(io, written)
        raise
    if not infos:
        return
    try:
        yield pa.RecordBatch.from_pydict(
            {METADATA_COLUMN: [info.to_json() for info in infos]},
            schema=pa.schema([(METADATA_COLUMN, pa.string())]),
        )
    except BaseException:
        # Closed or failed before the report got through (the task was killed or
        # its output stream broke): this attempt will not be committed.
        delete_quietly(io, written)
        raise
