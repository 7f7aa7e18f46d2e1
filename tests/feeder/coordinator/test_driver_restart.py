"""A driver restart keeps every epoch (issue 21 item 1), end to end with real processes.

``python -m feeder serve TABLE --port P --cache-dir D`` (Spark local mode, real
data nodes) is SIGKILLed while a consumer in another process is mid-epoch, and
started again with the same arguments. The consumer rides through the restart
and finishes the epoch with every row exactly once and no error; the restarted
feeder's data nodes adopt the cached slices the killed ones left, so it reads 0
bytes from table storage. Static and dynamic mode. Every wait is on an event (a
line on a pipe, a process exit, a status change), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TextIO

import pytest
from prometheus_client.parser import text_string_to_metric_families

from feeder.client import FeederClient
from feeder.coordinator.journal import DIR_NAME, KEY_NAME, STATE_NAME
from tests.feeder.tables import make_table, sample_arrow

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
ROWS = 4 * 3000
START_SECONDS = 300.0  # a Spark driver starting on a busy 2-core machine
STORAGE_READ = "icefeed_node_storage_bytes_read_total"


def _metric(port: int, name: str) -> float:
    """The sum of ``name`` over the samples a data node's own ``/metrics`` serves now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
        text = page.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line(stream: TextIO, proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line ``proc`` writes to ``stream`` (killed, and failing, after ``timeout``)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        return stream.readline()
    finally:
        timer.cancel()


class Server:
    """``python -m feeder serve`` in its own process, stderr kept in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start it and wait for its ready line; return that line."""
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "feeder", "serve", *self.args],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        line = _line(self.proc.stdout, self.proc, START_SECONDS)
        assert line.startswith("feeder serving"), f"no ready line: {self.tail()}"
        return line

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _until(client: FeederClient, predicate, timeout: float = 300.0) -> dict:
    """The first status document that satisfies ``predicate`` (polled; fails after timeout)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        status = client.status()
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"status never changed so: {status}"
        pause.wait(0.5)


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until every process in ``pids`` has ended (pidfds: an event, not a poll)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            assert ready, f"data node process {pid} outlived its driver by {timeout:.0f}s"
        finally:
            os.close(fd)


def _serve_args(table: str, port: int, cache: Path, node_metrics: int) -> list[str]:
    """``feeder serve`` arguments: one node, small slices, a node metrics port."""
    args = [table, "--port", str(port), "--cache-dir", str(cache), "--nodes", "1"]
    args += ["--slice-bytes", "40000", "--lease-seconds", "60"]
    return [*args, "--node-metrics-port", str(node_metrics)]


def _paused_consumer(args: list[str], log: Path) -> subprocess.Popen[str]:
    """``tests.feeder.restart_consumer ARGS`` started, once it paused mid-epoch."""
    consumer = subprocess.Popen(
        [sys.executable, "-m", "tests.feeder.restart_consumer", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert consumer.stdout is not None
    said = _line(consumer.stdout, consumer, 300)
    if said != f"read {args[3]} batches\n":
        consumer.kill()
        raise AssertionError(f"the consumer did not pause: {log.read_text()[-3000:]}")
    return consumer


@pytest.fixture
def table(catalog):
    make_table(catalog, files=4, rows_per_file=3000, row_group_rows=500)
    return "test.feed"


# static reads slice by slice: a MIX consumer reads whole windows ahead (bundled
# per node), which for a table this small is the whole epoch in flight at the pause
@pytest.mark.parametrize(("mode", "shuffle"), [("static", "slice"), ("dynamic", "mix")])
def test_a_sigkilled_driver_restarted_with_the_same_arguments_continues_the_epoch(
    table, tmp_path, mode, shuffle
):
    port, node_metrics = _free_port(), _free_port()
    cache = tmp_path / "cache"
    server = Server(_serve_args(table, port, cache, node_metrics), tmp_path / "server.log")
    consumer: subprocess.Popen[str] | None = None
    consumer_log = tmp_path / "consumer.log"
    try:
        server.start()  # its ready line: every slice cached
        endpoint = f"grpc://127.0.0.1:{port}"
        with FeederClient(endpoint, timeout=30) as client:
            before = client.status()
        first_read = _metric(node_metrics, STORAGE_READ)
        assert before["ready"] and before["rows"] == ROWS and before["slices"] > 2
        assert first_read > 0  # the counter works: the first start read the table
        out = tmp_path / "ids.json"
        consumer = _paused_consumer([endpoint, mode, shuffle, "6", str(out)], consumer_log)
        assert consumer.stdin is not None and consumer.stdout is not None
        journal = cache / DIR_NAME
        assert (journal / KEY_NAME).stat().st_mode & 0o777 == 0o600
        books = json.loads((journal / STATE_NAME).read_text())["books"]["books"]
        if mode == "dynamic":  # the lease book, mid-epoch, is on disk before the kill
            (book,) = books
            assert book["job"] == "restart-e2e" and 0 < book["book"]["rows_done"] < ROWS

        server.kill()  # SIGKILL mid-epoch: no clean-up of any kind
        _wait_gone([n["pid"] for n in before["nodes"]], timeout=120)
        consumer.stdin.write("go\n")  # it reads on against a dead feeder and retries
        consumer.stdin.flush()
        server.start()  # the same arguments; ready: every slice adopted or cached again
        with FeederClient(endpoint, timeout=30) as client:
            after = client.status()
        assert after["session"] == before["session"]  # the journal kept the key
        assert after["slices_cached"] == after["slices"] == before["slices"]

        assert _line(consumer.stdout, consumer, 600) == "DONE\n", consumer_log.read_text()[-3000:]
        assert consumer.wait(timeout=60) == 0
        ids = json.loads(out.read_text())
        assert len(ids) == ROWS and sorted(ids) == list(range(ROWS))  # each row exactly once

        # the restarted node's own counter: every slice adopted (checksums verified; a
        # damaged one is read again, tests/feeder/node/test_cache_integrity.py), none re-read
        assert _metric(node_metrics, STORAGE_READ) == 0, server.tail()
        # and the rest of the epoch came from the restarted feeder, not from buffers
        assert _metric(node_metrics, "icefeed_node_rows_served_total") > 0
        with FeederClient(endpoint, timeout=30) as client:
            assert mode in client.status()["jobs"]["restart-e2e"]["modes"]
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        server.stop()
    # a clean stop ends the session: nothing is left to continue
    assert not (cache / DIR_NAME / KEY_NAME).exists(), server.tail()


def _snapshot_ids(status: dict) -> list[int]:
    return [s["snapshot_id"] for s in status["snapshots"]]


@pytest.mark.parametrize(("mode", "shuffle"), [("static", "slice"), ("dynamic", "mix")])
def test_a_driver_restarted_after_a_refresh_continues_every_snapshot_it_served(
    catalog, tmp_path, mode, shuffle
):
    table = make_table(catalog, files=4, rows_per_file=3000, row_group_rows=500)
    first = table.current_snapshot().snapshot_id
    port, node_metrics = _free_port(), _free_port()
    cache = tmp_path / "cache"
    server = Server(_serve_args("test.feed", port, cache, node_metrics), tmp_path / "server.log")
    consumer: subprocess.Popen[str] | None = None
    consumer_log = tmp_path / "consumer.log"
    endpoint = f"grpc://127.0.0.1:{port}"
    try:
        server.start()
        out = tmp_path / "ids.json"
        consumer = _paused_consumer([endpoint, mode, shuffle, "6", str(out), "2"], consumer_log)
        assert consumer.stdin is not None and consumer.stdout is not None

        # mid-epoch, the table moves on (its first file deleted, a new one appended) and
        # the feeder refreshes: epoch 0 goes on reading the first snapshot
        table.delete("id < 3000")
        table.append(sample_arrow(3000, start=ROWS))
        second = table.current_snapshot().snapshot_id
        with FeederClient(endpoint, timeout=30) as client:
            record = client.refresh()
            assert record["changed"] and record["snapshot_id"] == second
            assert record["added_slices"] > 0
            before = _until(client, lambda s: s["snapshot_id"] == second and s["ready"])
        assert _snapshot_ids(before) == [first, second]
        state = json.loads((cache / DIR_NAME / STATE_NAME).read_text())
        assert state["version"] == 2
        assert [e["snapshot_id"] for e in state["snapshots"]["live"]] == [first, second]

        server.kill()  # SIGKILL after the refresh, mid-epoch
        _wait_gone([n["pid"] for n in before["nodes"]], timeout=120)
        consumer.stdin.write("go\n")
        consumer.stdin.flush()
        server.start()  # the same arguments
        with FeederClient(endpoint, timeout=30) as client:
            after = client.status()
        # the same session, serving both snapshots over the same slice ids, all adopted
        assert after["session"] == before["session"]
        assert _snapshot_ids(after) == [first, second] and after["snapshot_id"] == second
        assert after["slices"] == before["slices"] == after["slices_cached"]

        # epoch 0 ends on the first snapshot, every row exactly once
        assert _line(consumer.stdout, consumer, 600) == "DONE\n", consumer_log.read_text()[-3000:]
        assert sorted(json.loads(out.read_text())) == list(range(ROWS))
        # epoch 1 reads the newest snapshot: the first file's rows gone, the new ones there
        said = _line(consumer.stdout, consumer, 600)
        assert said == "DONE 1\n", consumer_log.read_text()[-3000:]
        assert consumer.wait(timeout=60) == 0
        ids = json.loads(out.with_name(f"{out.name}.1").read_text())
        assert sorted(ids) == list(range(3000, ROWS + 3000))
        # nothing was read from table storage after the restart: every slice adopted
        assert _metric(node_metrics, STORAGE_READ) == 0, server.tail()
        # no one reads the first snapshot any more: retired, its file's slices dropped
        with FeederClient(endpoint, timeout=30) as client:
            _until(client, lambda s: _snapshot_ids(s) == [second], timeout=60)
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        server.stop()
    assert not (cache / DIR_NAME / KEY_NAME).exists(), server.tail()
