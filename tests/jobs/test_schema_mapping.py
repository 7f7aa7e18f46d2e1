"""jobs.schema_mapping: Spark → Iceberg → Arrow types, and the strict table-compatibility check."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg import types as it
from pyiceberg.schema import Schema
from pyspark.sql import types as T

from jobs.errors import SpecError
from jobs.schema_mapping import ArrowLayout, check_compatible, iceberg_to_arrow, spark_to_iceberg

PRIMITIVES = [
    (T.BooleanType(), it.BooleanType()),
    (T.ByteType(), it.IntegerType()),
    (T.ShortType(), it.IntegerType()),
    (T.IntegerType(), it.IntegerType()),
    (T.LongType(), it.LongType()),
    (T.FloatType(), it.FloatType()),
    (T.DoubleType(), it.DoubleType()),
    (T.StringType(), it.StringType()),
    (T.BinaryType(), it.BinaryType()),
    (T.DateType(), it.DateType()),
    (T.TimestampType(), it.TimestamptzType()),
    (T.TimestampNTZType(), it.TimestampType()),
    (T.DecimalType(38, 10), it.DecimalType(38, 10)),
    (T.DecimalType(5, 0), it.DecimalType(5, 0)),
]


@pytest.mark.parametrize(("spark_type", "iceberg_type"), PRIMITIVES)
def test_each_primitive_maps_to_its_documented_iceberg_type(spark_type, iceberg_type) -> None:
    schema = spark_to_iceberg(T.StructType([T.StructField("c", spark_type, True)]))
    assert schema.find_field("c").field_type == iceberg_type


def test_timestamps_keep_instant_vs_wall_clock_semantics() -> None:
    schema = spark_to_iceberg(
        T.StructType(
            [
                T.StructField("instant", T.TimestampType()),
                T.StructField("wall", T.TimestampNTZType()),
            ]
        )
    )
    assert schema.find_field("instant").field_type == it.TimestamptzType()
    assert schema.find_field("wall").field_type == it.TimestampType()


def test_unsupported_types_are_refused_naming_every_column() -> None:
    spark_schema = T.StructType(
        [
            T.StructField("ok", T.LongType()),
            T.StructField("dur", T.DayTimeIntervalType()),
            T.StructField("nothing", T.NullType()),
            T.StructField("nested", T.StructType([T.StructField("ym", T.YearMonthIntervalType())])),
        ]
    )
    with pytest.raises(SpecError) as err:
        spark_to_iceberg(spark_schema)
    message = str(err.value)
    for column in ("dur", "nothing", "nested.ym"):
        assert column in message
    assert "ok:" not in message


def _spark_types(depth: int = 2) -> st.SearchStrategy[T.DataType]:
    leaves = st.sampled_from([p[0] for p in PRIMITIVES])
    if depth == 0:
        return leaves
    inner = _spark_types(depth - 1)
    names = st.lists(
        st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=3, unique=True
    )
    return st.one_of(
        leaves,
        st.builds(T.ArrayType, inner, st.booleans()),
        st.builds(T.MapType, leaves, inner, st.booleans()),
        names.flatmap(
            lambda ns: st.tuples(*[st.tuples(inner, st.booleans()) for _ in ns]).map(
                lambda ts, ns=ns: T.StructType(
                    [T.StructField(n, t, nullable) for n, (t, nullable) in zip(ns, ts, strict=True)]
                )
            )
        ),
    )


@st.composite
def spark_schemas(draw: st.DrawFn) -> T.StructType:
    names = draw(
        st.lists(st.text("xyz_", min_size=1, max_size=5), min_size=1, max_size=5, unique=True)
    )
    return T.StructType(
        [T.StructField(n, draw(_spark_types()), draw(st.booleans())) for n in names]
    )


@settings(max_examples=60, deadline=None)
@given(spark_schemas())
def test_field_ids_are_unique_and_nullability_is_kept(spark_schema: T.StructType) -> None:
    schema = spark_to_iceberg(spark_schema)
    ids = [f.field_id for f in schema._lazy_id_to_field.values()]
    assert len(ids) == len(set(ids))
    for spark_field in spark_schema.fields:
        assert schema.find_field(spark_field.name).required is (not spark_field.nullable)
    check_compatible(schema, schema, table="t.t")


@settings(max_examples=60, deadline=None)
@given(spark_schemas())
def test_every_arrow_file_field_carries_its_iceberg_id(spark_schema: T.StructType) -> None:
    import pyarrow as pa

    schema = spark_to_iceberg(spark_schema)
    seen: list[int] = []

    def walk(field: pa.Field) -> None:
        seen.append(int(field.metadata[b"PARQUET:field_id"]))
        t = field.type
        if pa.types.is_struct(t):
            for i in range(t.num_fields):
                walk(t.field(i))
        elif pa.types.is_list(t):
            walk(t.value_field)
        elif pa.types.is_map(t):
            walk(t.key_field)
            walk(t.item_field)

    for field in iceberg_to_arrow(schema):
        walk(field)
    assert sorted(seen) == sorted(schema._lazy_id_to_field)


def _schema(*fields: tuple[str, T.DataType, bool]) -> object:
    return spark_to_iceberg(T.StructType([T.StructField(n, t, nb) for n, t, nb in fields]))


def test_mismatch_names_missing_extra_and_retyped_columns() -> None:
    table = _schema(
        ("id", T.LongType(), False), ("name", T.StringType(), True), ("x", T.IntegerType(), True)
    )
    df = _schema(
        ("id", T.LongType(), False), ("x", T.LongType(), True), ("extra", T.StringType(), True)
    )
    with pytest.raises(SpecError) as err:
        check_compatible(table, df, table="ns.t")
    message = str(err.value)
    assert "name: missing" in message
    assert "extra: not a column" in message
    assert "x: long in the DataFrame, int in the table" in message
    assert "id:" not in message  # the matching column is not reported


def test_nullable_column_into_required_field_is_refused() -> None:
    table = _schema(("id", T.LongType(), False))
    df = _schema(("id", T.LongType(), True))
    with pytest.raises(SpecError, match="id: nullable in the DataFrame but required"):
        check_compatible(table, df, table="ns.t")


def test_required_column_into_optional_field_is_fine() -> None:
    check_compatible(
        _schema(("id", T.LongType(), True)), _schema(("id", T.LongType(), False)), table="ns.t"
    )


def test_nested_mismatch_is_named_by_path() -> None:
    inner_t = T.StructType([T.StructField("a", T.IntegerType())])
    inner_d = T.StructType([T.StructField("a", T.StringType())])
    with pytest.raises(SpecError, match=r"s\.a: string in the DataFrame, int in the table"):
        check_compatible(_schema(("s", inner_t, True)), _schema(("s", inner_d, True)), table="ns.t")


def _every_iceberg_type() -> Schema:
    fields: list[Any] = [
        it.NestedField(1, "b", it.BooleanType(), required=True, doc="a flag"),
        it.NestedField(2, "i", it.IntegerType()),
        it.NestedField(3, "l", it.LongType(), required=True),
        it.NestedField(4, "f", it.FloatType()),
        it.NestedField(5, "d", it.DoubleType()),
        it.NestedField(6, "dec", it.DecimalType(12, 3)),
        it.NestedField(7, "s", it.StringType(), doc="some text"),
        it.NestedField(8, "bin", it.BinaryType()),
        it.NestedField(9, "fx", it.FixedType(5)),
        it.NestedField(10, "u", it.UUIDType()),
        it.NestedField(11, "dt", it.DateType()),
        it.NestedField(12, "tm", it.TimeType()),
        it.NestedField(13, "ts", it.TimestampType()),
        it.NestedField(14, "tstz", it.TimestamptzType()),
        it.NestedField(15, "ts_ns", it.TimestampNanoType()),
        it.NestedField(16, "tstz_ns", it.TimestamptzNanoType()),
        it.NestedField(17, "unknown", it.UnknownType()),
        it.NestedField(18, "arr", it.ListType(19, it.StringType(), element_required=False)),
        it.NestedField(
            20, "m", it.MapType(21, it.StringType(), 22, it.LongType(), value_required=True)
        ),
        it.NestedField(
            23,
            "st",
            it.StructType(
                it.NestedField(24, "x", it.IntegerType(), required=True),
                it.NestedField(25, "y", it.ListType(26, it.BinaryType()), doc="nested"),
            ),
        ),
    ]
    return Schema(*fields)


def test_the_read_layout_is_exactly_pyiceberg_readers_schema() -> None:
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = _every_iceberg_type()
    ours = iceberg_to_arrow(schema, ArrowLayout.READ)
    theirs = schema_to_pyarrow(schema, include_field_ids=False)
    assert ours.equals(theirs, check_metadata=True), f"{ours}\n!=\n{theirs}"
    projected = schema.select("s", "st", "m")
    assert iceberg_to_arrow(projected, ArrowLayout.READ).equals(
        schema_to_pyarrow(projected, include_field_ids=False), check_metadata=True
    )


def test_the_file_layout_uses_sparks_small_types_and_refuses_what_it_cannot_write() -> None:
    import pyarrow as pa

    schema = _every_iceberg_type().select("s", "bin", "arr", "u")
    types = {f.name: f.type for f in iceberg_to_arrow(schema)}
    assert types["s"] == pa.string() and types["bin"] == pa.binary()
    assert pa.types.is_list(types["arr"]) and types["u"] == pa.binary(16)
    with pytest.raises(SpecError, match="cannot write Iceberg type timestamp_ns"):
        iceberg_to_arrow(Schema(it.NestedField(1, "t", it.TimestampNanoType())))
