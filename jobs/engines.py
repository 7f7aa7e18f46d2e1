"""Who writes a write's Parquet data files: one interface, one class per engine.

:func:`jobs.writer.stage_write` owns the table, the staging prefix, the Spark job
group and the cleanup; a :class:`DataFileWriter` only turns the ordered DataFrame
into data files under the plan's prefix and returns their
:class:`~jobs.datafiles.DataFileInfo` — the same inputs and the same result for
every engine, so the commit cannot tell them apart. :func:`data_file_writer`
picks the engine by :class:`WriteEngine`; the string the user passes is turned
into that enum once, at the edge.

* ``ARROW`` (default, :class:`ArrowWriter`): ``mapInArrow`` tasks write the files
  with pyarrow (:mod:`jobs.datafiles`); it writes every table the writer accepts.
* ``SPARK`` (opt-in, :class:`SparkWriter`): Spark's own Parquet writer writes them
  and the driver reads their footers (:mod:`jobs.spark_parquet`); unpartitioned
  tables of primitive columns in a local warehouse only, refused up front.
"""

from __future__ import annotations

import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

from jobs.data_file_info import DataFileInfo
from jobs.datafiles import METADATA_COLUMN, TaskPlan, write_task
from jobs.errors import SpecError
from jobs.spark import ARROW_BYTE_BOUND_OFF, ARROW_MAX_BYTES_CONF

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


class WriteEngine(str, Enum):
    """Who writes the Parquet data files (see the module doc)."""

    ARROW = "arrow"
    SPARK = "spark"


class DataFileWriter(ABC):
    """Writes a DataFrame as Parquet data files of one table; one subclass per engine.

    The checks raise SpecError for what the engine cannot write, before anything
    is written (the first before the table is even created).
    """

    engine: WriteEngine

    @abstractmethod
    def check_new_table(self, schema: Schema, partition_by: Sequence[str], *, table: str) -> None:
        """Refuse, before ``table`` is created, a table this engine could never write.

        Args:
            schema: The Iceberg schema the table would get (from the DataFrame).
            partition_by: The identity partition columns it would get.
            table: Its name, for messages.

        Raises:
            SpecError: the engine cannot write such a table.
        """

    @abstractmethod
    def check_table(
        self,
        schema: Schema,
        spec: PartitionSpec,
        *,
        location: str,
        parquet_options: Mapping[str, Any],
        table: str,
    ) -> None:
        """Refuse an existing table this engine cannot write.

        Args:
            schema: The table's Iceberg schema.
            spec: Its partition spec.
            location: Its location (``file://…``, ``s3://…``).
            parquet_options: The ParquetWriter options from its properties (codec).
            table: Its name, for messages.

        Raises:
            SpecError: the engine cannot write this table.
        """

    @abstractmethod
    def write(self, df: DataFrame, plan: TaskPlan) -> list[DataFileInfo]:
        """Write ``df`` as data files under ``plan.prefix`` and describe them.

        Runs one Spark job; the caller owns its job group and deletes the prefix's
        files if it fails (or keeps only the files returned if it succeeds).

        Args:
            df: The rows, columns already in the table schema's order.
            plan: The table's schema, spec, FileIO properties, codec and prefix.

        Returns:
            One DataFileInfo per written file (duplicates of retried tasks allowed).
        """


class ArrowWriter(DataFileWriter):
    """The default engine: ``mapInArrow`` tasks write the files and report them."""

    engine = WriteEngine.ARROW

    def check_new_table(self, schema: Schema, partition_by: Sequence[str], *, table: str) -> None:
        """Accept every table the writer accepts; see :meth:`DataFileWriter.check_new_table`."""

    def check_table(
        self,
        schema: Schema,
        spec: PartitionSpec,
        *,
        location: str,
        parquet_options: Mapping[str, Any],
        table: str,
    ) -> None:
        """Accept every table the writer accepts; see :meth:`DataFileWriter.check_table`."""

    def write(self, df: DataFrame, plan: TaskPlan) -> list[DataFileInfo]:
        """Write ``df`` from Spark's Python workers; see :meth:`DataFileWriter.write`."""
        _hint_byte_bound(df.sparkSession)
        rows = df.mapInArrow(partial(write_task, plan), f"{METADATA_COLUMN} string").collect()
        return [DataFileInfo.from_json(row[0]) for row in rows]


class SparkWriter(DataFileWriter):
    """The opt-in engine: Spark's Parquet writer writes the files, footers describe them."""

    engine = WriteEngine.SPARK

    def check_new_table(self, schema: Schema, partition_by: Sequence[str], *, table: str) -> None:
        """Refuse nested columns and partitioning; see :meth:`DataFileWriter.check_new_table`."""
        from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC

        from jobs.schema_mapping import identity_partition_spec
        from jobs.spark_parquet import check_writable

        spec = identity_partition_spec(schema, partition_by) if partition_by else None
        check_writable(schema, spec or UNPARTITIONED_PARTITION_SPEC, "", table=table)

    def check_table(
        self,
        schema: Schema,
        spec: PartitionSpec,
        *,
        location: str,
        parquet_options: Mapping[str, Any],
        table: str,
    ) -> None:
        """Refuse what Spark cannot write here; see :meth:`DataFileWriter.check_table`."""
        from jobs.spark_parquet import check_writable, write_options

        check_writable(schema, spec, location, table=table)
        write_options(dict(parquet_options))

    def write(self, df: DataFrame, plan: TaskPlan) -> list[DataFileInfo]:
        """Write ``df`` with ``df.write.parquet``; see :meth:`DataFileWriter.write`."""
        from pyiceberg.schema import Schema

        from jobs import spark_parquet

        return spark_parquet.write_files(
            df,
            Schema.model_validate_json(plan.schema_json),
            prefix=plan.prefix,
            io_properties=plan.io_properties,
            parquet_options=plan.parquet_options,
        )


_WRITERS: dict[WriteEngine, type[DataFileWriter]] = {
    WriteEngine.ARROW: ArrowWriter,
    WriteEngine.SPARK: SparkWriter,
}


def data_file_writer(engine: WriteEngine | str) -> DataFileWriter:
    """Return the writer of ``engine``.

    Args:
        engine: A :class:`WriteEngine` or its value (``"arrow"``, ``"spark"``).

    Returns:
        A new writer of that engine.

    Raises:
        SpecError: ``engine`` names no engine (the message lists the valid ones).
    """
    try:
        chosen = WriteEngine(engine)
    except ValueError:
        valid = ", ".join(str(e.value) for e in WriteEngine)
        raise SpecError(f"engine {engine!r} is not one of {valid}") from None
    return _WRITERS[chosen]()


#: sessions already given the byte-bound hint
_hinted: weakref.WeakSet[Any] = weakref.WeakSet()


def _hint_byte_bound(spark: Any) -> None:
    """Log once per session if Spark still checks Arrow batch bytes after every row."""
    if spark in _hinted:
        return
    value = spark.conf.get(ARROW_MAX_BYTES_CONF, None)
    if isinstance(value, str) and value.rstrip("bB") == str(ARROW_BYTE_BOUND_OFF):
        return
    _hinted.add(spark)
    log.info(
        "%s=%s: Spark measures each Arrow batch after every row it adds, which can "
        "double the write's CPU; set it to %d (icefeed's get_spark does) to bound "
        "batches by spark.sql.execution.arrow.maxRecordsPerBatch rows only",
        ARROW_MAX_BYTES_CONF,
        value,
        ARROW_BYTE_BOUND_OFF,
    )
