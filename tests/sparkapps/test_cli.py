"""The ``icefeed`` console script: subcommands are registered and help is instant."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparkapps.cli import build_parser, main


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    sub_actions = [a for a in parser._actions if a.dest == "command"]
    assert sub_actions, "no subcommands registered"
    names = set(sub_actions[0].choices)  # type: ignore[arg-type]
    assert {"clean", "feeder", "sparkapp"} <= names


def test_no_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_console_script_help_runs_without_spark() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkapps.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout and "feeder" in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sparkapps.cli as c; c.build_parser(); "
            "print('pyspark' in sys.modules, 'kubernetes' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.split() == ["False", "False"], probe.stderr
