"""Column types a CleanSpec may declare, parsed once from their YAML spelling."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class TypeKind(enum.Enum):
    """The base types a column can be cast to."""

    INT = "int"
    LONG = "long"
    DOUBLE = "double"
    STRING = "string"
    TIMESTAMP = "timestamp"
    DATE = "date"
    BOOL = "bool"
    DECIMAL = "decimal"


#: The spelling shown to users when a type name is wrong.
VALID_TYPE_NAMES = "int, long, double, string, timestamp, date, bool, decimal(p,s)"

_SPARK_NAMES = {
    TypeKind.INT: "INT",
    TypeKind.LONG: "BIGINT",
    TypeKind.DOUBLE: "DOUBLE",
    TypeKind.STRING: "STRING",
    TypeKind.TIMESTAMP: "TIMESTAMP",
    TypeKind.DATE: "DATE",
    TypeKind.BOOL: "BOOLEAN",
}
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_NUMERIC = {TypeKind.INT, TypeKind.LONG, TypeKind.DOUBLE, TypeKind.DECIMAL}
_ORDERED = _NUMERIC | {TypeKind.TIMESTAMP, TypeKind.DATE}


@dataclass(frozen=True)
class ColumnType:
    """A parsed column type: a kind, plus precision and scale for decimals."""

    kind: TypeKind
    precision: int = 0
    scale: int = 0

    @property
    def spark_sql(self) -> str:
        """The Spark SQL type name used in ``try_cast(... AS <type>)``."""
        if self.kind is TypeKind.DECIMAL:
            return f"DECIMAL({self.precision},{self.scale})"
        return _SPARK_NAMES[self.kind]

    @property
    def is_numeric(self) -> bool:
        """True for int, long, double and decimal columns."""
        return self.kind in _NUMERIC

    @property
    def is_ordered(self) -> bool:
        """True if ``min``/``max`` make sense for this type (numbers, dates, timestamps)."""
        return self.kind in _ORDERED

    def __str__(self) -> str:
        if self.kind is TypeKind.DECIMAL:
            return f"decimal({self.precision},{self.scale})"
        return str(self.kind.value)


def parse_type(name: str) -> ColumnType:
    """Parse a YAML type name (``int``, ``decimal(10,2)``, ...) into a ColumnType.

    Raises ValueError naming the valid types if ``name`` is not one of them.
    """
    text = name.strip().lower()
    match = _DECIMAL.match(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"{name!r}: decimal precision must be 1..38 and scale <= precision")
        return ColumnType(TypeKind.DECIMAL, precision, scale)
    for kind in TypeKind:
        if kind is not TypeKind.DECIMAL and text == kind.value:
            return ColumnType(kind)
    raise ValueError(f"{name!r} is not one of {VALID_TYPE_NAMES}")
