"""A data node in a process of its own: ``python -m tests.feeder.node_process`` < spec JSON.

A FAKE of the launcher's Spark task only (``run_data_node`` itself is the real
code), so a test can SIGSTOP or SIGKILL a real node process without Spark, or
run several nodes as separate processes (stand-ins for Spark executors). The
spec line on stdin (never argv, which ``ps`` shows) holds the ticket key.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feeder.node.datanode import run_data_node
from feeder.node.settings import NodeSettings

REPO = Path(__file__).resolve().parents[2]


def start_node_process(
    node_id: str,
    endpoint: str,
    key: bytes,
    cache_dir: Path,
    *,
    batch_rows: int = 64,
    local_dir: Path | None = None,
    token: str | None = None,
) -> subprocess.Popen[str]:
    """Start one data node process that joins the coordinator at ``endpoint`` (serving
    local reads on a socket in ``local_dir`` when given)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.feeder.node_process"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    spec = {
        "node_id": node_id,
        "endpoint": endpoint,
        "key": key.hex(),
        "cache_dir": str(cache_dir),
        "batch_rows": batch_rows,
        "local_dir": str(local_dir) if local_dir is not None else None,
        "token": token,
    }
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.close()
    return proc


@contextmanager
def node_processes(
    count: int, endpoint: str, key: bytes, cache_dir: Path, **options: Any
) -> Iterator[list[subprocess.Popen[str]]]:
    """Run ``count`` node processes (ids ``p0``, ``p1``, ...); kill any left on exit.

    The caller tells them to stop (``Coordinator.request_stop``) and waits for them;
    a process still running when the block ends is killed, so none outlives a test.
    """
    procs = [start_node_process(f"p{i}", endpoint, key, cache_dir, **options) for i in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=20)


def main() -> None:
    """Run one data node from the spec on stdin until the coordinator says stop."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    spec = json.loads(sys.stdin.readline())
    run_data_node(
        spec["node_id"],
        spec["endpoint"],
        ticket_key=bytes.fromhex(spec["key"]),
        settings=NodeSettings(
            cache_dir=spec["cache_dir"],
            heartbeat_seconds=0.2,
            batch_rows=spec["batch_rows"],
            local_dir=spec.get("local_dir"),
            token=spec.get("token"),
        ),
        timeout=10.0,
    )


if __name__ == "__main__":
    main()
