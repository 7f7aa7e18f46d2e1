"""Real Iceberg v2 delete files for tests: written with pyarrow, committed through pyiceberg.

pyiceberg 0.12 reads position deletes but never writes them (``Table.delete``
falls back to copy-on-write) and rejects equality deletes when planning; no
Iceberg Spark runtime is installed here. So these helpers write the delete
file to the spec's layout themselves and commit it with pyiceberg's own
snapshot producer (a fast append), whose manifest writer is told the manifest
holds deletes (``content = deletes``, as the spec requires for delete files):

- position deletes: Parquet with ``file_path: string`` (field id 2147483546)
  and ``pos: long`` (field id 2147483545), sorted by path then position;
- equality deletes: Parquet with the equality columns under the table's field
  ids, the data file entry carrying ``equality_ids``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

POS_FILE_PATH_ID = 2147483546
POS_POS_ID = 2147483545


def _field(name: str, type_: pa.DataType, field_id: int) -> pa.Field:
    return pa.field(name, type_, nullable=False, metadata={b"PARQUET:field_id": str(field_id)})


def _add(table: Any, rows: pa.Table, content: Any, **fields: Any) -> Any:
    """Write ``rows`` as a Parquet delete file of ``content`` and commit it; return the table."""
    from pyiceberg.manifest import DataFile, FileFormat
    from pyiceberg.typedef import Record

    kind = "pos-deletes" if content.name == "POSITION_DELETES" else "eq-deletes"
    path = table.location_provider().new_data_location(f"{kind}-{uuid.uuid4()}.parquet")
    with table.io.new_output(path).create() as out:
        pq.write_table(rows, out)
    delete_file = DataFile.from_args(
        content=content,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=len(rows),
        file_size_in_bytes=len(table.io.new_input(path)),
        spec_id=table.spec().spec_id,
        **fields,
    )
    return _commit(table, delete_file)


def _commit(table: Any, delete_file: Any) -> Any:
    """Commit ``delete_file`` in a delete manifest of a new snapshot; return the reloaded table."""
    from pyiceberg.manifest import ManifestContent, ManifestWriterV2
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self) -> ManifestContent:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    class AddDeletes(_FastAppendFiles):
        def new_manifest_writer(self, spec: Any) -> Any:
            return DeleteManifestWriter(
                spec=spec,
                schema=self.schema(),
                output_file=self.new_manifest_output(),
                snapshot_id=self._snapshot_id,
                avro_compression=self._compression,
            )

    with table.transaction() as tx:
        producer = AddDeletes(operation=Operation.DELETE, transaction=tx, io=table.io)
        producer.append_data_file(delete_file)
        producer.commit()
    return table.catalog.load_table(table.name())


def add_position_deletes(table: Any, data_file_path: str, positions: Sequence[int]) -> Any:
    """Delete rows ``positions`` (0-based, in file order) of one data file; return the table.

    Args:
        table: A pyiceberg v2 ``Table`` (unpartitioned).
        data_file_path: The data file's path exactly as the manifests hold it.
        positions: Row positions in that file to delete.

    Returns:
        The table reloaded at the new snapshot.
    """
    from pyiceberg.manifest import DataFileContent

    schema = pa.schema(
        [_field("file_path", pa.string(), POS_FILE_PATH_ID), _field("pos", pa.int64(), POS_POS_ID)]
    )
    pos = sorted(positions)
    rows = pa.table({"file_path": [data_file_path] * len(pos), "pos": pos}, schema=schema)
    # as Spark writes them: the bounds of file_path name the one data file they apply to
    bounds = {POS_FILE_PATH_ID: data_file_path.encode()}
    return _add(
        table, rows, DataFileContent.POSITION_DELETES, lower_bounds=bounds, upper_bounds=bounds
    )


def add_equality_deletes(table: Any, column: str, values: Sequence[Any]) -> Any:
    """Delete every row whose ``column`` equals one of ``values``; return the table.

    Args:
        table: A pyiceberg v2 ``Table`` (unpartitioned).
        column: The equality column (a top-level primitive column).
        values: The values whose rows are deleted.

    Returns:
        The table reloaded at the new snapshot.
    """
    from pyiceberg.io.pyarrow import schema_to_pyarrow
    from pyiceberg.manifest import DataFileContent

    field = table.schema().find_field(column)
    arrow_type = schema_to_pyarrow(table.schema().select(column)).field(column).type
    schema = pa.schema([_field(column, arrow_type, field.field_id)])
    rows = pa.table({column: list(values)}, schema=schema)
    return _add(table, rows, DataFileContent.EQUALITY_DELETES, equality_ids=[field.field_id])
