"""jobs.exit_codes: every icefeed command exits with the codes in README.md's table."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from jobs import errors
from jobs.exit_codes import ExitCode, exit_code_for
from sparkapps.cli import main
from sparkapps.problems import ApplicationExistsError, ApplicationFailedError, WaitTimeoutError

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.SpecError("x"), ExitCode.BAD_INPUT),
        (errors.ManifestError("x"), ExitCode.BAD_INPUT),
        (ApplicationExistsError("x", status=409), ExitCode.BAD_INPUT),
        (ApplicationFailedError("app", "OOMKilled"), ExitCode.FAILED),
        (WaitTimeoutError("x"), ExitCode.FAILED),
        (errors.CommitError("x"), ExitCode.COMMIT),
        (errors.CatalogError("x"), ExitCode.COMMIT),
        (errors.RejectThresholdError("x"), ExitCode.REJECTS),
        (errors.FeederError("x"), ExitCode.FAILED),
        (errors.MissingExtraError("x"), ExitCode.FAILED),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_each_error_maps_to_its_code(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_the_readme_table_lists_every_code() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(c) for c in re.findall(r"^\| `(\d+)` \|", section, flags=re.M)}
    assert listed == {int(c) for c in ExitCode}


def _bad_spec(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"table": "a.b", "colums": {}}))
    return str(path)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (lambda t: ["clean", _bad_spec(t)], ExitCode.BAD_INPUT),
        (lambda t: ["clean", "validate", _bad_spec(t)], ExitCode.BAD_INPUT),
        (lambda t: ["clean", "validate", str(t / "absent.yaml")], ExitCode.BAD_INPUT),
        (lambda t: ["clean", "schema", "extra"], ExitCode.BAD_INPUT),
        (lambda t: ["feeder", "serve", "ns.t", "--port", "70000"], ExitCode.BAD_INPUT),
        (lambda t: ["sparkapp", "render", "clean-flights", "--set", "novalue"], ExitCode.BAD_INPUT),
        (lambda t: ["sweep", "nope.t"], ExitCode.BAD_INPUT),
        (lambda t: ["sweep", "nope.t", "--catalog", "no-such-catalog"], ExitCode.COMMIT),
    ],
    ids=[
        "clean-bad-spec",
        "clean-validate-bad-spec",
        "clean-validate-missing-file",
        "clean-schema-usage",
        "feeder-bad-option",
        "sparkapp-render-bad-set",
        "sweep-unknown-table",
        "sweep-unknown-catalog",
    ],
)
def test_every_command_exits_with_the_table_code(
    argv, code: ExitCode, tmp_path: Path, catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    # (sparkapp validate finding problems exits 1: tests/sparkapps/test_commands.py, with CRDs)
    assert main(argv(tmp_path)) == code
    assert capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "argv",
    [["clean"], ["feeder"], ["sparkapp"], ["sweep"], ["nope"], ["feeder", "serve", "--port", "x"]],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == ExitCode.BAD_INPUT


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"icefeed {version('icefeed')}"
