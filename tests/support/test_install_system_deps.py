"""tests/support/install_system_deps.sh: silent when PostgreSQL is there, clear when it is not."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("install_system_deps.sh")


def test_is_silent_and_succeeds_when_the_server_is_installed() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(os.geteuid() == 0 and not Path("/usr/bin/setpriv").exists(), reason="setpriv")
def test_without_root_a_missing_server_names_the_package_and_fails(tmp_path: Path) -> None:
    # Hide the binaries (a PATH and a lib dir without them); under root, drop to
    # `nobody` so the script takes its non-root branch instead of installing.
    env = {"PATH": "/usr/bin:/bin", "ICEFEED_POSTGRES_LIBDIR": str(tmp_path)}
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    result = subprocess.run(
        [*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "apt-get install -y postgresql" in result.stderr
