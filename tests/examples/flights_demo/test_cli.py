"""``python -m examples.flights_demo``: the command line and the Makefile's way to run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from examples.flights_demo.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_cli_exits_non_zero_on_a_bad_run_id_before_starting_anything(capsys, tmp_path):
    assert main(["--run-id", "../escape", "--output", str(tmp_path / "unused")]) == 1
    assert "run id" in capsys.readouterr().err
    assert not (tmp_path / "unused").exists()


def test_the_module_runs_from_the_repository_root_as_make_demo_runs_it():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "examples.flights_demo", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "python -m examples.flights_demo" in done.stdout and "--run-id" in done.stdout
    assert "Traceback" not in done.stderr
