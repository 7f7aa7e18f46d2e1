"""jobs.clean.coltypes: every valid type name round-trips; anything else is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.clean.coltypes import VALID_TYPE_NAMES, ColumnType, TypeKind, parse_type

simple_kinds = st.sampled_from([k for k in TypeKind if k is not TypeKind.DECIMAL])


@st.composite
def column_types(draw: st.DrawFn) -> ColumnType:
    if draw(st.booleans()):
        precision = draw(st.integers(1, 38))
        return ColumnType(TypeKind.DECIMAL, precision, draw(st.integers(0, precision)))
    return ColumnType(draw(simple_kinds))


@given(column_types())
def test_type_names_round_trip(column_type: ColumnType) -> None:
    assert parse_type(str(column_type)) == column_type
    assert parse_type(f"  {str(column_type).upper()} ") == column_type


@given(st.text(max_size=20))
def test_unknown_names_raise_listing_the_valid_ones(name: str) -> None:
    try:
        parsed = parse_type(name)
    except ValueError as exc:
        assert VALID_TYPE_NAMES in str(exc) or "decimal precision" in str(exc)
    else:
        assert str(parsed) == " ".join(name.lower().split()).replace(" ", "")


@pytest.mark.parametrize(
    ("name", "spark"),
    [("int", "INT"), ("long", "BIGINT"), ("bool", "BOOLEAN"), ("decimal(38,0)", "DECIMAL(38,0)")],
)
def test_spark_names(name: str, spark: str) -> None:
    assert parse_type(name).spark_sql == spark


def test_ordered_and_numeric_kinds() -> None:
    assert parse_type("date").is_ordered and not parse_type("date").is_numeric
    assert parse_type("decimal(5,2)").is_numeric
    assert not parse_type("string").is_ordered and not parse_type("bool").is_ordered
