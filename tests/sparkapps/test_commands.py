"""``icefeed sparkapp render|validate``: the CLI edge of the pure functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sparkapps.cli import main
from sparkapps.paths import MANIFEST_DIR

pytestmark = pytest.mark.k8s


def test_render_prints_yaml_with_values_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("image:\n  repository: reg.example.com/icefeed\n")
    code = main(
        [
            "sparkapp",
            "render",
            "clean-flights",
            "-f",
            str(values),
            "--set",
            "image.tag=2.0.0",
            "--override",
            "spec.executor.instances=5",
            "-n",
            "ml",
        ]
    )
    assert code == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["spec"]["image"] == "reg.example.com/icefeed:2.0.0"
    assert manifest["spec"]["executor"]["instances"] == 5
    assert manifest["metadata"]["namespace"] == "ml"


def test_validate_reports_problems_with_paths_and_exit_one(
    crds: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = yaml.safe_load((MANIFEST_DIR / "clean-flights.yaml").read_text())
    bad["spec"]["driver"]["memmory"] = "1g"
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(bad))
    assert main(["sparkapp", "validate", str(file)]) == 1
    out = capsys.readouterr().out
    assert "spec.driver.memmory: unknown field" in out and "did you mean 'memory'" in out
    assert main(["sparkapp", "validate", "--json", str(file)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[0]["problems"][0]["check"] == "unknown-field"


def test_validate_accepts_every_shipped_manifest(
    crds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(str(p) for p in MANIFEST_DIR.glob("*.yaml"))
    assert main(["sparkapp", "validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_render_set_splits_pairs_on_commas_and_set_string_keeps_strings_as_helm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--set a=x,b=y`` is two values (it once set the repository to ``"x,image.tag=y"``)."""
    args = ["sparkapp", "render", "clean-flights", "--set", "image.repository=reg/x,image.tag=7"]
    assert main([*args, "--override", "spec.executor.instances=2"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["spec"]["image"] == "reg/x:7"
    assert main([*args, "--set-string", "image.tag=007"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["image"] == "reg/x:007"
