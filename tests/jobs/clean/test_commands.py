"""``icefeed clean validate SPEC`` and ``icefeed clean schema``: no Spark, no writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobs.clean.spec import CleanSpec, spec_json_schema
from sparkapps.cli import main
from tests.jobs.clean.test_cli import write_spec

REPO = Path(__file__).resolve().parents[3]
PUBLISHED = REPO / "docs" / "cleanspec.schema.json"
SHIPPED_SPEC = REPO / "jobs" / "specs" / "flights.yaml"


def test_validate_accepts_a_good_spec_and_writes_nothing(
    tmp_path: Path, icefeed_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path)
    assert main(["clean", "validate", str(spec)]) == 0
    assert "valid CleanSpec for cli.events" in capsys.readouterr().out
    assert main(["clean", "validate", str(spec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "spec": str(spec),
        "valid": True,
        "table": "cli.events",
    }
    assert not icefeed_home.exists() or not any(icefeed_home.iterdir())


def test_validate_names_the_field_path_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, columns={"id": {"type": "innt"}}, max_reject_fraction=2)
    assert main(["clean", "validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("icefeed clean: error: ") and err.count("\n") == 1
    assert "columns.id.type: 'innt' is not one of" in err
    assert "max_reject_fraction: Input should be less than or equal to 1" in err


def test_validate_and_schema_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", "validate"]) == 2
    assert "give the spec to check" in capsys.readouterr().err
    assert main(["clean", "schema", "extra"]) == 2
    assert main(["clean", "a.yaml", "b.yaml"]) == 2
    assert "unexpected argument 'b.yaml'" in capsys.readouterr().err


def test_validate_starts_no_spark() -> None:
    code = (
        "import sys; from sparkapps.cli import main; "
        f"rc = main(['clean', 'validate', {str(SHIPPED_SPEC)!r}]); "
        "print(rc, 'pyspark' in sys.modules, 'pyiceberg' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.split()[-3:] == ["0", "False", "False"], done.stderr


def test_schema_command_prints_the_model_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_json_schema()


def test_the_published_schema_is_the_models_schema() -> None:
    """docs/cleanspec.schema.json cannot drift: regenerate it with
    ``icefeed clean schema > docs/cleanspec.schema.json``."""
    assert json.loads(PUBLISHED.read_text(encoding="utf-8")) == spec_json_schema()


def test_the_schema_accepts_the_shipped_spec_and_refuses_a_typo() -> None:
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(SHIPPED_SPEC.read_text(encoding="utf-8"))
    jsonschema.validate(data, schema)
    data["colums"] = data.pop("columns")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
    bad = {**yaml.safe_load(SHIPPED_SPEC.read_text()), "severity": {"cast": "loud"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_spec_loads_from_a_file_uri(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    assert CleanSpec.from_yaml(spec.as_uri()) == CleanSpec.from_yaml(spec)


def test_a_spec_loads_from_s3(
    s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path)
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key="specs/events.yaml", Body=spec.read_bytes()
    )
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{s3_server.bucket}/specs/events.yaml"
    assert CleanSpec.from_yaml(uri) == CleanSpec.from_yaml(spec)
    assert main(["clean", "validate", uri]) == 0
    assert main(["clean", "validate", f"s3://{s3_server.bucket}/specs/absent.yaml"]) == 2
    assert "cannot read spec 's3://" in capsys.readouterr().err
