"""Read a CleanSpec's raw source once, every declared column as a string.

CSV: no schema inference; Spark takes the column names from the header and
reads every value as a string. JSON: read with a schema of declared columns as
strings (a number is kept as its JSON text). Parquet: the file's own types,
cast to strings. Each row carries ``_source_file`` (``input_file_name()``).

Errors that a user must fix come out as SpecError before any write: no file
matches the path, an empty source, a header that lacks a declared column.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.clean.spec import ColumnSpec, SourceFormat, SourceSpec
from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SOURCE_FILE_COLUMN = "_source_file"
_DEFAULT_OPTIONS = {SourceFormat.CSV: {"header": "true"}}


def check_source_exists(source: SourceSpec) -> None:
    """Raise SpecError if a local ``source.path`` (file, folder or glob) matches nothing.

    Remote URIs (``s3://``) are checked by Spark at the first read instead.
    """
    if source.is_remote:
        return
    path = source.path.removeprefix("file://")
    if any(ch in path for ch in "*?["):
        if not glob.glob(path):
            raise SpecError(f"source.path: no file matches {source.path!r}")
    elif not Path(path).exists():
        raise SpecError(f"source.path: {source.path!r} does not exist")


def read_source(
    spark: SparkSession, source: SourceSpec, columns: dict[str, ColumnSpec]
) -> DataFrame:
    """Return the declared source columns as strings plus ``_source_file``.

    Lazy: only the CSV header (or Parquet footer) is read here. Raises SpecError
    if the path matches nothing, the source is empty, or a declared column is
    missing from the header / file schema.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    check_source_exists(source)
    options = {**_DEFAULT_OPTIONS.get(source.format, {}), **source.reader_options()}
    infer = [k for k in options if k.lower() == "inferschema"]
    if source.format is SourceFormat.CSV and infer:
        # Inferred types would re-read the data and change the raw text rejects keep.
        for key in infer:
            options.pop(key)
        log.warning("source.options.inferSchema ignored: the clean job reads CSV as text")
    reader = spark.read.format(source.format.value).options(**options)
    if source.format is SourceFormat.JSON:
        reader = reader.schema(
            StructType([StructField(name, StringType(), True) for name in columns])
        )
    try:
        frame = reader.load(source.path)
    except AnalysisException as exc:
        condition = exc.getCondition() or ""
        if "PATH_NOT_FOUND" in condition or "UNABLE_TO_INFER_SCHEMA" in condition:
            raise SpecError(
                f"source.path: nothing readable at {source.path!r} ({condition}); "
                "check the path and that the source is not empty"
            ) from None
        raise SpecError(f"source: cannot read {source.path!r}: {_first_line(exc)}") from None
    present = frame.columns
    if not present:
        raise SpecError(f"source: {source.path!r} is empty (no header, no rows)")
    missing = [name for name in columns if name not in present]
    if missing:
        raise SpecError(
            f"source: {source.path!r} lacks declared column(s) {', '.join(missing)}; "
            f"it has: {', '.join(present)}"
        )
    log.info("reading %s (%s) columns %s", source.path, source.format.value, list(columns))
    return frame.select(
        *[F.col(f"`{name}`").cast("string").alias(name) for name in columns],
        F.input_file_name().alias(SOURCE_FILE_COLUMN),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
