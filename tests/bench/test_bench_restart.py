"""Driver restart (group ``restart``): time to resume and bytes re-read (issue 21 item 1).

The real thing, as in ``tests/feeder/coordinator/test_driver_restart.py`` but on a
larger table: ``python -m feeder serve TABLE --cache-dir D`` (Spark local mode, one
data node) serves a dynamic MIX epoch to a FeederDataset in another process; after
the consumer read a few batches the driver is SIGKILLed and started again with the
same arguments, and the consumer finishes the epoch (checked: every row exactly
once). Recorded: the first start's seconds to ready and storage bytes read, the
restart's seconds to ready (its Spark driver start included) and storage bytes
read (0 when every cached slice was adopted), and the seconds from the kill to the
end of the consumer's epoch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from feeder.client import FeederClient
from tests.bench.recorder import record
from tests.feeder.coordinator.test_driver_restart import (
    REPO,
    STORAGE_READ,
    Server,
    _free_port,
    _line,
    _metric,
    _wait_gone,
)
from tests.feeder.tables import make_table

pytestmark = pytest.mark.bench

FILES, ROWS_PER_FILE = 4, 250_000
ROWS = FILES * ROWS_PER_FILE


def test_bench_driver_restart_dynamic(catalog, tmp_path):
    make_table(catalog, files=FILES, rows_per_file=ROWS_PER_FILE, row_group_rows=50_000)
    port, node_metrics = _free_port(), _free_port()
    cache = tmp_path / "cache"
    args = ["test.feed", "--port", str(port), "--cache-dir", str(cache), "--nodes", "1"]
    args += ["--lease-seconds", "60", "--node-metrics-port", str(node_metrics)]
    server = Server(args, tmp_path / "server.log")
    consumer: subprocess.Popen[str] | None = None
    try:
        t0 = time.perf_counter()
        server.start()
        first_ready = time.perf_counter() - t0
        first_read = _metric(node_metrics, STORAGE_READ)
        endpoint = f"grpc://127.0.0.1:{port}"
        with FeederClient(endpoint, timeout=30) as client:
            before = client.status()
        out = tmp_path / "ids.json"
        command = ["tests.feeder.restart_consumer", endpoint, "dynamic", "mix", "20", str(out)]
        consumer = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "consumer.log").open("w"),
            text=True,
        )
        assert consumer.stdin is not None and consumer.stdout is not None
        assert _line(consumer.stdout, consumer, 300) == "read 20 batches\n"
        killed = time.perf_counter()
        server.kill()
        _wait_gone([n["pid"] for n in before["nodes"]], timeout=120)
        consumer.stdin.write("go\n")
        consumer.stdin.flush()
        server.start()
        restart_ready = time.perf_counter() - killed
        restart_read = _metric(node_metrics, STORAGE_READ)
        assert _line(consumer.stdout, consumer, 900) == "DONE\n", server.tail()
        kill_to_done = time.perf_counter() - killed
        assert consumer.wait(timeout=60) == 0
        ids = json.loads(out.read_text())
        assert len(ids) == ROWS and len(set(ids)) == ROWS  # every row exactly once
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        server.stop()
    record(
        "restart",
        "driver_restart_dynamic",
        rows=ROWS,
        seconds=round(kill_to_done, 2),
        first_start_seconds_to_ready=round(first_ready, 2),
        first_start_storage_bytes=int(first_read),
        restart_seconds_to_ready=round(restart_ready, 2),
        restart_storage_bytes=int(restart_read),
        kill_to_epoch_done_seconds=round(kill_to_done, 2),
    )
