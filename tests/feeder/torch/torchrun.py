"""Start a script on 2 real processes with ``torchrun`` (gloo on CPU), for the DDP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(script: Path, args: list[str], *, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """Run ``script args`` on ``nproc`` processes of ``torch.distributed.run``; wait for them.

    The script should live in tests/feeder/torch/: a script's folder comes first on
    sys.path, and in tests/feeder/ the test package tests/feeder/torch/ would shadow
    the real torch.

    Args:
        script: the script to run.
        args: its arguments.
        nproc: the number of processes.

    Returns:
        The finished run (output captured as text).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        str(script),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
