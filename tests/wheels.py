"""Build a wheel of this checkout, for the tests that install icefeed into a fresh venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: what the wheel is built from (the packages are pyproject.toml's)
SOURCES = ("pyproject.toml", "README.md")
PACKAGES = ("jobs", "feeder", "sparkapps")


def build_wheel(root: Path) -> Path:
    """Build ``icefeed-*.whl`` into ``root/wheels`` from a copy of the checkout in ``root/src``.

    The copy keeps build/ and *.egg-info out of the worktree and follows symbolic
    links (``sparkapps/chart/values.yaml``); no build isolation (the dev venv's
    setuptools), no dependencies.

    Args:
        root: an empty folder.

    Returns:
        The wheel.
    """
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", "wheels", "./src"]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *build],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (root / "wheels").glob("icefeed-*.whl")
    return wheel
