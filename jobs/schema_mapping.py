"""Spark schema → Iceberg schema → Arrow schema, and the check of a DataFrame against a table.

The one home of icefeed's type mappings: the writer's (Spark → Iceberg, Iceberg →
the Arrow of the files it writes) and the feeder's (Iceberg → the Arrow it
serves, see :class:`ArrowLayout`).

The writer creates tables from a DataFrame's Spark schema and refuses to write a
DataFrame whose columns do not match an existing table. The mapping (Spark type →
the Arrow type Spark hands to ``mapInArrow`` → Iceberg type):

=========================  ===========================  ===========================
Spark                      Arrow (``mapInArrow``)       Iceberg
=========================  ===========================  ===========================
BooleanType                bool                         boolean
ByteType, ShortType        int8, int16                  int (widened, lossless)
IntegerType                int32                        int
LongType                   int64                        long
FloatType, DoubleType      float, double                float, double
DecimalType(p, s)          decimal128(p, s)             decimal(p, s)   (p ≤ 38)
StringType, Char/Varchar   string                       string
BinaryType                 binary                       binary
DateType                   date32                       date
TimestampType              timestamp[us, tz=UTC]        timestamptz     (instant, UTC-adjusted)
TimestampNTZType           timestamp[us]                timestamp       (wall clock, no zone)
ArrayType(e)               list<e>                      list<e>
MapType(k, v)              map<k, v>                    map<k, v>
StructType                 struct                       struct
=========================  ===========================  ===========================

Spark's ``TimestampType`` is an instant (stored as UTC micros, shown in the session
time zone), which is exactly Iceberg's ``timestamptz``; ``TimestampNTZType`` is a
local date-time, Iceberg's ``timestamp``. Both are microseconds, so nothing is lost.

Not supported (a :class:`~jobs.errors.SpecError` names every such column): intervals
(``DayTimeIntervalType``, ``YearMonthIntervalType``, ``CalendarIntervalType``),
``NullType`` (a column of untyped ``NULL`` — cast it), ``VariantType``, user-defined
types, and map keys that are not primitive.

Nullability: a nullable Spark column becomes an optional Iceberg field, a
non-nullable one a required field. Writing into an existing table is strict: every
table column must be present with the same Iceberg type (no silent casts, no silent
drops, no extra columns), and a nullable column cannot go into a required field.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from jobs.errors import SpecError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType
    from pyspark.sql.types import DataType, StructType

#: Iceberg's limit on decimal precision.
MAX_DECIMAL_PRECISION = 38
#: Key of a field's Iceberg id in Arrow field metadata (as Parquet stores it).
FIELD_ID_KEY = b"PARQUET:field_id"


class _Ids:
    """Hands out field ids 1, 2, 3, … in the order fields are visited."""

    def __init__(self) -> None:
        self._next = 0

    def next(self) -> int:
        self._next += 1
        return self._next


def spark_to_iceberg(schema: StructType) -> Schema:
    """Return the Iceberg schema (fresh field ids from 1) for a Spark ``StructType``.

    Raises SpecError naming every column whose type Iceberg cannot store.
    """
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    ids = _Ids()
    problems: list[str] = []
    top_ids = [ids.next() for _ in schema.fields]
    fields = []
    for field_id, field in zip(top_ids, schema.fields, strict=True):
        converted = _convert(field.dataType, field.name, ids, problems)
        if converted is not None:
            fields.append(
                NestedField(
                    field_id=field_id,
                    name=field.name,
                    field_type=converted,
                    required=not field.nullable,
                )
            )
    if problems:
        raise SpecError(
            "these columns have types an Iceberg table cannot store: "
            + "; ".join(problems)
            + " (cast them first, e.g. intervals to long, NULL literals to a concrete type)"
        )
    return Schema(*fields)


def _convert(dtype: DataType, path: str, ids: _Ids, problems: list[str]) -> IcebergType | None:
    """Map one Spark type; record a problem (and return None) when unsupported."""
    from pyiceberg import types as it
    from pyspark.sql import types as st

    primitive: dict[type[Any], IcebergType] = {
        st.BooleanType: it.BooleanType(),
        st.ByteType: it.IntegerType(),
        st.ShortType: it.IntegerType(),
        st.IntegerType: it.IntegerType(),
        st.LongType: it.LongType(),
        st.FloatType: it.FloatType(),
        st.DoubleType: it.DoubleType(),
        st.StringType: it.StringType(),
        st.CharType: it.StringType(),
        st.VarcharType: it.StringType(),
        st.BinaryType: it.BinaryType(),
        st.DateType: it.DateType(),
        st.TimestampType: it.TimestamptzType(),
        st.TimestampNTZType: it.TimestampType(),
    }
    for spark_type, iceberg_type in primitive.items():
        if type(dtype) is spark_type:
            return iceberg_type
    if isinstance(dtype, st.DecimalType):
        if dtype.precision > MAX_DECIMAL_PRECISION:
            problems.append(f"{path}: {dtype.simpleString()} (precision > 38)")
            return None
        return it.DecimalType(dtype.precision, dtype.scale)
    if isinstance(dtype, st.ArrayType):
        element_id = ids.next()
        element = _convert(dtype.elementType, f"{path}.element", ids, problems)
        if element is None:
            return None
        return it.ListType(
            element_id=element_id, element_type=element, element_required=not dtype.containsNull
        )
    if isinstance(dtype, st.MapType):
        key_id, value_id = ids.next(), ids.next()
        key = _convert(dtype.keyType, f"{path}.key", ids, problems)
        value = _convert(dtype.valueType, f"{path}.value", ids, problems)
        if key is None or value is None:
            return None
        if not key.is_primitive:
            problems.append(
                f"{path}.key: {dtype.keyType.simpleString()} (map keys must be primitive)"
            )
            return None
        return it.MapType(
            key_id=key_id,
            key_type=key,
            value_id=value_id,
            value_type=value,
            value_required=not dtype.valueContainsNull,
        )
    if isinstance(dtype, st.StructType):
        child_ids = [ids.next() for _ in dtype.fields]
        children = []
        for child_id, child in zip(child_ids, dtype.fields, strict=True):
            converted = _convert(child.dataType, f"{path}.{child.name}", ids, problems)
            if converted is not None:
                children.append(
                    it.NestedField(child_id, child.name, converted, required=not child.nullable)
                )
        if len(children) != len(dtype.fields):
            return None
        return it.StructType(*children)
    problems.append(f"{path}: {dtype.simpleString()}")
    return None


def identity_partition_spec(schema: Schema, partition_by: Sequence[str]) -> PartitionSpec:
    """Return the partition spec of a new table partitioned by identity on ``partition_by``.

    Args:
        schema: The new table's Iceberg schema.
        partition_by: Names of top-level primitive columns, in partition order.

    Returns:
        The spec; partition field ids start at 1000, as Iceberg's do.

    Raises:
        SpecError: a name is not a column of ``schema``, or not a primitive one.
    """
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    missing = [c for c in partition_by if c not in {f.name for f in schema.fields}]
    if missing:
        raise SpecError(f"partition_by names columns that do not exist: {', '.join(missing)}")
    nested = [c for c in partition_by if not schema.find_field(c).field_type.is_primitive]
    if nested:
        raise SpecError(f"partition_by columns must be primitive: {', '.join(nested)}")
    fields = [
        PartitionField(
            source_id=schema.find_field(name).field_id,
            field_id=1000 + i,
            transform=IdentityTransform(),
            name=name,
        )
        for i, name in enumerate(partition_by)
    ]
    return PartitionSpec(*fields)


def check_compatible(table_schema: Schema, df_schema: Schema, *, table: str) -> None:
    """Check that rows of ``df_schema`` can be written to a table of ``table_schema`` as-is.

    Both schemas are Iceberg schemas (``df_schema`` from :func:`spark_to_iceberg`);
    field ids are ignored, names and types must match exactly. Raises SpecError
    listing every missing, extra, retyped or nullable-into-required column.
    """
    problems: list[str] = []
    _compare_fields(list(table_schema.fields), list(df_schema.fields), prefix="", problems=problems)
    if problems:
        raise SpecError(
            f"the DataFrame does not match the schema of table {table!r}: "
            + "; ".join(problems)
            + " (select/cast the columns to the table's schema;"
            " nothing is cast or dropped silently)"
        )


def _compare_fields(
    table_fields: list[Any], df_fields: list[Any], *, prefix: str, problems: list[str]
) -> None:
    by_name = {f.name: f for f in df_fields}
    table_names = {f.name for f in table_fields}
    for t_field in table_fields:
        path = f"{prefix}{t_field.name}"
        d_field = by_name.get(t_field.name)
        if d_field is None:
            problems.append(f"{path}: missing from the DataFrame")
            continue
        if t_field.required and not d_field.required:
            problems.append(f"{path}: nullable in the DataFrame but required in the table")
        _compare_types(t_field.field_type, d_field.field_type, path=path, problems=problems)
    for d_field in df_fields:
        if d_field.name not in table_names:
            problems.append(f"{prefix}{d_field.name}: not a column of the table")


def _compare_types(
    t_type: IcebergType, d_type: IcebergType, *, path: str, problems: list[str]
) -> None:
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(t_type, StructType) and isinstance(d_type, StructType):
        _compare_fields(
            list(t_type.fields), list(d_type.fields), prefix=f"{path}.", problems=problems
        )
    elif isinstance(t_type, ListType) and isinstance(d_type, ListType):
        if t_type.element_required and not d_type.element_required:
            problems.append(f"{path}.element: nullable in the DataFrame but required in the table")
        _compare_types(
            t_type.element_type, d_type.element_type, path=f"{path}.element", problems=problems
        )
    elif isinstance(t_type, MapType) and isinstance(d_type, MapType):
        _compare_types(t_type.key_type, d_type.key_type, path=f"{path}.key", problems=problems)
        if t_type.value_required and not d_type.value_required:
            problems.append(f"{path}.value: nullable in the DataFrame but required in the table")
        _compare_types(
            t_type.value_type, d_type.value_type, path=f"{path}.value", problems=problems
        )
    elif t_type != d_type:
        problems.append(f"{path}: {d_type} in the DataFrame, {t_type} in the table")


class ArrowLayout(str, Enum):
    """Which Arrow spelling of an Iceberg schema :func:`iceberg_to_arrow` returns.

    ``FILE``: the Parquet files icefeed writes. Every field carries its Iceberg id
    as ``PARQUET:field_id``; strings, binaries and lists are the small types Spark
    hands to ``mapInArrow`` (so most columns need no cast); field docs are dropped.
    ``READ``: what pyiceberg's Arrow reader yields and the feeder serves: no field
    ids, ``large_string`` / ``large_binary`` / ``large_list``, ``uuid`` extension,
    nanosecond timestamps and ``null`` for v3's unknown type, docs as ``doc``
    field metadata — exactly pyiceberg's ``schema_to_pyarrow(include_field_ids=False)``.
    """

    FILE = "file"
    READ = "read"


def iceberg_to_arrow(schema: Schema, layout: ArrowLayout = ArrowLayout.FILE) -> pa.Schema:
    """Return the Arrow schema of ``schema`` in ``layout``.

    Args:
        schema: An Iceberg schema (or projection of one).
        layout: The files icefeed writes (default) or the rows a reader yields.

    Returns:
        The Arrow schema, fields in ``schema`` order, nullable where optional.

    Raises:
        SpecError: a type the layout cannot represent (geometry and geography;
            unknown and nanosecond timestamps in ``FILE``).
    """
    import pyarrow as pa

    return pa.schema([_arrow_field(f, layout) for f in schema.fields])


def _arrow_field(field: Any, layout: ArrowLayout) -> pa.Field:
    import pyarrow as pa

    metadata: dict[bytes, bytes] = {}
    if layout is ArrowLayout.FILE:
        metadata[FIELD_ID_KEY] = str(field.field_id).encode()
    elif field.doc:
        metadata[b"doc"] = field.doc.encode()
    return pa.field(
        field.name,
        _arrow_type(field.field_type, layout),
        nullable=not field.required,
        metadata=metadata,
    )


def _arrow_type(itype: IcebergType, layout: ArrowLayout) -> pa.DataType:
    import pyarrow as pa
    from pyiceberg import types as it

    read = layout is ArrowLayout.READ
    if isinstance(itype, it.StructType):
        return pa.struct([_arrow_field(f, layout) for f in itype.fields])
    if isinstance(itype, it.ListType):
        element = _arrow_field(itype.element_field, layout)
        return pa.large_list(element) if read else pa.list_(element)
    if isinstance(itype, it.MapType):
        key, value = _arrow_field(itype.key_field, layout), _arrow_field(itype.value_field, layout)
        return pa.map_(key, value)
    if isinstance(itype, it.DecimalType):
        return pa.decimal128(itype.precision, itype.scale)
    primitive = {
        it.BooleanType: pa.bool_(),
        it.IntegerType: pa.int32(),
        it.LongType: pa.int64(),
        it.FloatType: pa.float32(),
        it.DoubleType: pa.float64(),
        it.StringType: pa.large_string() if read else pa.string(),
        it.BinaryType: pa.large_binary() if read else pa.binary(),
        it.DateType: pa.date32(),
        it.TimestampType: pa.timestamp("us"),
        it.TimestamptzType: pa.timestamp("us", tz="UTC"),
        it.TimeType: pa.time64("us"),
        it.UUIDType: pa.uuid() if read else pa.binary(16),
    }
    if read:
        primitive.update(
            {
                it.TimestampNanoType: pa.timestamp("ns"),
                it.TimestamptzNanoType: pa.timestamp("ns", tz="UTC"),
                it.UnknownType: pa.null(),
            }
        )
    for iceberg_type, arrow_type in primitive.items():
        if type(itype) is iceberg_type:
            return arrow_type
    if isinstance(itype, it.FixedType):
        return pa.binary(len(itype))
    raise SpecError(f"icefeed cannot {'read' if read else 'write'} Iceberg type {itype}")
