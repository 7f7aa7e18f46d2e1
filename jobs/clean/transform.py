"""The Spark plan of a clean job: type every column, tag each row with its first failing rule.

:func:`tag_rows` turns the raw string rows into one DataFrame holding, per row,
the raw values (internal names ``__raw_<i>``), the typed values under their
table names, ``_source_file`` and ``_reason`` (null for a valid row; see
:mod:`jobs.clean.reasons` for the rule order). :func:`valid_rows` and
:func:`rejected_rows` project it into the two tables. The job persists the
tagged frame once, so counting and both writes reuse one read of the source.

Casting uses ``try_cast``: a value that does not parse becomes a ``cast:``
reject, never a task failure. A check rejects a row unless it is *true*
(false and null both reject). Derived columns are computed on valid rows only,
in spec order (a later one may use an earlier one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.clean.coltypes import TypeKind
from jobs.clean.reasons import RuleKind, reason
from jobs.clean.source import SOURCE_FILE_COLUMN
from jobs.clean.spec import CleanSpec, ColumnSpec, Direction
from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REASON_COLUMN = "_reason"
RUN_ID_COLUMN = "_run_id"


def raw_name(index: int) -> str:
    """Internal name of the raw (string) value of the ``index``-th declared column."""
    return f"__raw_{index}"


def tag_rows(raw: DataFrame, spec: CleanSpec) -> DataFrame:
    """Return raw + typed columns + ``_source_file`` + ``_reason`` (null when valid).

    ``raw`` has the declared source columns as strings and ``_source_file``.
    Raises SpecError naming the check whose Spark SQL does not analyse or is
    not boolean.
    """
    from pyspark.sql import functions as F

    declared = list(spec.columns.items())
    typed = raw.select(
        *[F.col(f"`{name}`").alias(raw_name(i)) for i, (name, _) in enumerate(declared)],
        *[
            _typed(F.col(f"`{name}`"), column).alias(spec.final_name(name))
            for name, column in declared
        ],
        F.col(SOURCE_FILE_COLUMN),
    )
    rules: list[tuple[Column, str]] = []
    for i, (name, column) in enumerate(declared):
        if column.column_type.kind is not TypeKind.STRING:
            failed = F.col(raw_name(i)).isNotNull() & F.col(spec.final_name(name)).isNull()
            rules.append((failed, reason(RuleKind.CAST, name)))
    for name, column in declared:
        if column.required:
            rules.append((F.col(spec.final_name(name)).isNull(), reason(RuleKind.REQUIRED, name)))
    for name, column in declared:
        outside = _outside_range(F.col(spec.final_name(name)), column)
        if outside is not None:
            rules.append((outside, reason(RuleKind.RANGE, name)))
    for name, column in declared:
        if column.allowed is not None:
            value = F.col(spec.final_name(name))
            rules.append((~value.isin(list(column.allowed)), reason(RuleKind.ALLOWED, name)))
    for check_name, expression in spec.checks.items():
        check = analysed_expression(typed, f"checks.{check_name}", expression, boolean=True)
        rules.append((~F.coalesce(check, F.lit(False)), reason(RuleKind.CHECK, check_name)))
    # A null condition (e.g. a null value outside a range test) means "passed".
    reasons = [F.when(F.coalesce(cond, F.lit(False)), F.lit(text)) for cond, text in rules]
    first = F.coalesce(*reasons) if reasons else F.lit(None)
    tagged = typed.withColumn(REASON_COLUMN, first.cast("string"))
    if spec.dedupe is not None:
        tagged = _tag_duplicates(tagged, spec)
    return tagged


def valid_rows(tagged: DataFrame, spec: CleanSpec) -> DataFrame:
    """The rows to write to the clean table: typed columns, then derived columns.

    Raises SpecError naming a ``derive`` entry whose Spark SQL does not analyse.
    """
    from pyspark.sql import functions as F

    frame = tagged.filter(F.col(REASON_COLUMN).isNull()).select(
        *[F.col(spec.final_name(name)) for name in spec.columns]
    )
    for name, expression in spec.derive.items():
        frame = frame.withColumn(name, analysed_expression(frame, f"derive.{name}", expression))
    return frame


def rejected_rows(tagged: DataFrame, spec: CleanSpec, run_id: str) -> DataFrame:
    """The rows to quarantine: raw strings under source names, ``_reason``, ``_run_id``, file."""
    from pyspark.sql import functions as F

    return tagged.filter(F.col(REASON_COLUMN).isNotNull()).select(
        *[F.col(raw_name(i)).alias(name) for i, name in enumerate(spec.columns)],
        F.col(REASON_COLUMN),
        F.lit(run_id).alias(RUN_ID_COLUMN),
        F.col(SOURCE_FILE_COLUMN),
    )


def analysed_expression(
    frame: DataFrame, where: str, expression: str, *, boolean: bool = False
) -> Column:
    """Parse and analyse ``expression`` against ``frame``; SpecError names ``where`` if bad."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    try:
        column = F.expr(expression)
        result_type = frame.select(column.alias("probe")).schema["probe"].dataType
    except (ParseException, AnalysisException) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"{where}: {expression!r} is not valid Spark SQL: {first_line}") from None
    if boolean and not isinstance(result_type, BooleanType):
        raise SpecError(
            f"{where}: {expression!r} must be a boolean expression, "
            f"it returns {result_type.simpleString()}"
        )
    return column


def _typed(raw: Column, column: ColumnSpec) -> Column:
    from pyspark.sql import functions as F

    kind = column.column_type.kind
    if kind is TypeKind.STRING:
        return raw
    if column.format is not None and kind is TypeKind.TIMESTAMP:
        return F.try_to_timestamp(raw, F.lit(column.format))
    if column.format is not None and kind is TypeKind.DATE:
        return F.try_to_date(raw, column.format)
    return raw.try_cast(column.column_type.spark_sql)


def _outside_range(value: Column, column: ColumnSpec) -> Column | None:
    from pyspark.sql import functions as F

    kind = column.column_type
    tests = []
    for bound, below in ((column.min, True), (column.max, False)):
        if bound is None:
            continue
        limit = F.lit(bound)
        if not kind.is_numeric:  # dates and timestamps come as ISO text
            limit = limit.cast(kind.spark_sql)
        tests.append(value < limit if below else value > limit)
    if not tests:
        return None
    return tests[0] if len(tests) == 1 else (tests[0] | tests[1])


def _tag_duplicates(tagged: DataFrame, spec: CleanSpec) -> DataFrame:
    """Mark all but the first valid row of each dedupe key as ``duplicate``.

    The order is ``order_by``, then every raw value, then the source file: a
    total order on row contents, so the kept row does not depend on
    partitioning or input order.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    assert spec.dedupe is not None
    ordering = []
    for name, direction in spec.dedupe.ordering:
        col = F.col(name)
        ordering.append(
            col.desc_nulls_last() if direction is Direction.DESC else col.asc_nulls_last()
        )
    ordering += [F.col(raw_name(i)).asc_nulls_first() for i in range(len(spec.columns))]
    ordering.append(F.col(SOURCE_FILE_COLUMN).asc())
    is_valid = F.col(REASON_COLUMN).isNull()
    window = Window.partitionBy(is_valid, *[F.col(k) for k in spec.dedupe.key]).orderBy(*ordering)
    duplicate = is_valid & (F.row_number().over(window) > 1)
    return tagged.withColumn(
        REASON_COLUMN,
        F.when(duplicate, F.lit(reason(RuleKind.DUPLICATE))).otherwise(F.col(REASON_COLUMN)),
    )
