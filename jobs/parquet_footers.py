"""Reading Parquet footers: the one place icefeed opens a data file for its metadata.

A footer says what a file holds without reading its rows: the row count, row
groups and their sizes, column statistics and the Iceberg field id of every
column (``PARQUET:field_id``). The writer turns footers into DataFile metadata
(:func:`file_info`: the task side from the footer it just wrote, the
``engine="spark"`` path from files Spark wrote, via :func:`describe_file`); the
feeder's planner sizes slices from them (:func:`row_group_sizes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.data_file_info import DataFileInfo
from jobs.schema_mapping import FIELD_ID_KEY

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from pyiceberg.io import FileIO
    from pyiceberg.schema import Schema


def read_footer(io: FileIO, path: str) -> pq.FileMetaData:
    """Read the footer of the Parquet file at ``path`` (no row data).

    Args:
        io: The FileIO that can open ``path`` (the table's).
        path: URI of a Parquet data file.

    Returns:
        The file's Parquet metadata.

    Raises:
        OSError: the file cannot be opened or is not Parquet (pyarrow's errors).
    """
    import pyarrow.parquet as pq

    with io.new_input(path).open() as stream:
        return pq.read_metadata(stream)


def file_info(
    path: str,
    metadata: pq.FileMetaData,
    size: int,
    partition: tuple[Any, ...],
    schema: Schema,
) -> DataFileInfo:
    """DataFile metadata of the Parquet file at ``path`` from its footer ``metadata``.

    Counts and bounds are keyed by the Iceberg field ids of ``schema`` (matched
    by column path), as pyiceberg computes them for its own writes.

    Args:
        path: URI of the file, as the table will reference it.
        metadata: Its footer (from the writer that closed it, or :func:`read_footer`).
        size: Its size in bytes.
        partition: Its partition tuple (``()`` when unpartitioned).
        schema: The table's Iceberg schema.

    Returns:
        The file's :class:`~jobs.datafiles.DataFileInfo`.
    """
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )

    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=metadata,
        stats_columns=compute_statistics_plan(schema, {}),
        parquet_column_mapping=parquet_path_to_id_mapping(schema),
    ).to_serialized_dict()
    return DataFileInfo(
        path=path,
        size=size,
        record_count=stats["record_count"],
        partition=partition,
        column_sizes=stats["column_sizes"],
        value_counts=stats["value_counts"],
        null_value_counts=stats["null_value_counts"],
        nan_value_counts=stats["nan_value_counts"],
        lower_bounds=stats["lower_bounds"],
        upper_bounds=stats["upper_bounds"],
        split_offsets=tuple(stats["split_offsets"]),
    )


def describe_file(
    io: FileIO, path: str, schema: Schema, partition: tuple[Any, ...] = ()
) -> DataFileInfo:
    """Read the footer of the data file at ``path`` and return its DataFile metadata.

    Args:
        io: The table's FileIO.
        path: URI of a Parquet data file written for the table.
        schema: The table's Iceberg schema.
        partition: The file's partition tuple (``()`` when unpartitioned).

    Returns:
        The file's :class:`~jobs.datafiles.DataFileInfo`.

    Raises:
        OSError: the file cannot be opened or is not Parquet.
    """
    size = len(io.new_input(path))
    return file_info(path, read_footer(io, path), size, partition, schema)


def row_group_sizes(metadata: pq.FileMetaData, field_ids: set[int]) -> list[tuple[int, int]]:
    """Return ``(rows, uncompressed bytes of the columns in field_ids)`` per row group.

    Columns are matched by the field id of their top-level column; a row group
    in which none matches counts its whole size.

    Args:
        metadata: A Parquet footer.
        field_ids: Iceberg field ids of the top-level columns to count.

    Returns:
        One ``(rows, bytes)`` pair per row group, in file order.
    """
    top_ids: dict[str, int] = {}
    for field in metadata.schema.to_arrow_schema():
        if field.metadata and FIELD_ID_KEY in field.metadata:
            top_ids[field.name] = int(field.metadata[FIELD_ID_KEY])
    wanted = [
        j
        for j in range(metadata.num_columns)
        if top_ids.get(metadata.schema.column(j).path.split(".")[0]) in field_ids
    ]
    out = []
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        size = sum(group.column(j).total_uncompressed_size for j in wanted) if wanted else 0
        out.append((group.num_rows, size or group.total_byte_size))
    return out
