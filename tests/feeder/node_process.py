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

from feeder.node.settings import NodeSettings
from feeder.node.task import run_data_node

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
    host: str | None = None,
) -> subprocess.Popen[str]:
    """Start one data node process that joins the coordinator at ``endpoint`` (serving
    local reads on a socket in ``local_dir`` when given; reporting ``host`` for locality
    when given)."""
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
        "host": host,
    }
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.close()
    return proc


@contextmanager
def node_processes(
    count: int,
    endpoint: str,
    key: bytes,
    cache_dir: Path,
    *,
    hosts: list[str] | None = None,
    **options: Any,
) -> Iterator[list[subprocess.Popen[str]]]:
    """Run ``count`` node processes (ids ``p0``, ``p1``, ...; node ``i`` on simulated host
    ``hosts[i]`` when given); kill any left on exit.

    The caller tells them to stop (``Coordinator.request_stop``) and waits for them;
    a process still running when the block ends is killed, so none outlives a test.
    """
    procs = [
        start_node_process(
            f"p{i}", endpoint, key, cache_dir, host=hosts[i] if hosts else None, **options
        )
        for i in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=20)


@contextmanager
def serving(
    coordinator: Any,
    count: int,
    key: bytes,
    cache_dir: Path,
    *,
    ready_seconds: float = 120,
    **options: Any,
) -> Iterator[list[subprocess.Popen[str]]]:
    """Run ``count`` node processes for ``coordinator`` (options as :func:`node_processes`)
    until it is ready; on exit stop the coordinator, wait for the nodes and close it.

    Raises AssertionError when it is not ready in ``ready_seconds`` or a node that was
    not killed exits non-zero.
    """
    with node_processes(count, coordinator.endpoint, key, cache_dir, **options) as procs:
        try:
            assert coordinator.wait_ready(ready_seconds), coordinator.status()
            yield procs
        finally:
            coordinator.request_stop()
            codes = [proc.wait(30) for proc in procs if proc.returncode is None]
            coordinator.close()
        assert set(codes) <= {0}, codes


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
            locality_host=spec.get("host"),
        ),
        timeout=10.0,
    )


if __name__ == "__main__":
    main()
