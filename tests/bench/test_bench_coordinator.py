"""Coordinator load (group ``coordinator``): 1,000 simulated consumers, one coordinator.

The coordinator is the real :class:`~feeder.coordinator.service.Coordinator` in this
process over real Flight on 127.0.0.1, with two thread data nodes that cached a
131,072-row table in 16 slices (they serve nothing during the run). The consumers
are simulated by ``LOAD_PROCESSES`` processes (``tests.bench.coordinator_load``),
each running its share over ``THREADS`` threads and ``CLIENTS`` Flight clients,
so at most ``LOAD_PROCESSES × THREADS`` requests are in flight at once. Per epoch
each consumer asks for its static plan (rank ``i`` of 1,000, job ``static``) and
leases MIX windows of 64 rows in job ``dynamic`` (2,048 units per epoch, each
``lease`` → ``heartbeat`` → ``done``) until the epoch is done. Closed loop: every
consumer sends its next request as soon as the last one returned, so the figures
are the coordinator's ceiling on this machine and latencies at that ceiling, with
the load processes sharing the same 2 cores.

Records: ``load_x1000`` (requests, requests/s, the coordinator's CPU per request)
and one ``<action>_x1000`` per action (p50/p99/max latency in ms). The issue's
target (p99 lease latency < 100 ms) is judged by ``tests.bench.summary``, never
asserted here.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from feeder.coordinator.journal import Journal
from tests.bench.recorder import record
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import make_table

pytestmark = pytest.mark.bench

GROUP = "coordinator"
CONSUMERS = 1_000
LOAD_PROCESSES = 4
THREADS = 8  # per load process
CLIENTS = 2  # Flight clients per load process
EPOCHS = 3
SLICES, SLICE_ROWS = 16, 8_192
WINDOW_ROWS, BLOCK_ROWS = 64, 4  # every window takes 4 rows of each slice
REPO = Path(__file__).resolve().parents[2]


def _load_process(spec: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.coordinator_load"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.flush()
    return proc


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("journal", [False, True], ids=["no_journal", "journal"])
def test_one_coordinator_serves_1000_consumers(catalog, tmp_path, journal):
    """Without a journal, and with one (what a feeder started with a cache folder keeps:
    every lease, heartbeat and done answered once its change is fsynced, group commit)."""
    make_table(catalog, files=1, rows_per_file=SLICES * SLICE_ROWS, row_group_rows=SLICE_ROWS)
    book = None
    if journal:
        book = Journal(tmp_path / "journal")
        book.begin({"bench": "coordinator"})
    suffix = "_journal" if journal else ""
    with local_feeder(
        catalog, cache_dir=tmp_path / "cache", slice_bytes=10_000, journal=book
    ) as feeder:
        assert len(feeder.coordinator.served.plans) == SLICES
        share = CONSUMERS // LOAD_PROCESSES
        procs = [
            _load_process(
                {
                    "endpoint": feeder.endpoint,
                    "first": p * share,
                    "consumers": share,
                    "world_size": CONSUMERS,
                    "threads": THREADS,
                    "clients": CLIENTS,
                    "epochs": EPOCHS,
                    "window_rows": WINDOW_ROWS,
                    "block_rows": BLOCK_ROWS,
                }
            )
            for p in range(LOAD_PROCESSES)
        ]
        try:
            for proc in procs:  # every load process connected before the clock starts
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            cpu0 = _cpu_seconds()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outs = []
            for proc in procs:
                assert proc.stdout is not None
                outs.append(json.loads(proc.stdout.readline()))
            coordinator_cpu = _cpu_seconds() - cpu0
            status = feeder.coordinator.status()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)
    errors = [e for out in outs for e in out["errors"]]
    assert not errors, errors[:5]
    jobs = status["jobs"]
    calls = [tuple(call) for out in outs for call in out["calls"]]
    start = min(out["start"] for out in outs)
    wall = max(out["end"] for out in outs) - start
    per_second: dict[int, int] = defaultdict(int)
    by_action: dict[str, list[float]] = defaultdict(list)
    for action, began, seconds in calls:
        per_second[int(began + seconds - start)] += 1
        by_action[action].append(seconds)
    full_seconds = [n for s, n in per_second.items() if s < int(wall)]
    assert len(by_action["plan"]) == CONSUMERS * EPOCHS
    for epoch in range(EPOCHS):  # every unit leased, kept and acknowledged once
        assert sum(out["rows_done"][str(epoch)] for out in outs) == SLICES * SLICE_ROWS
    units = len(by_action["done"])
    record(
        GROUP,
        f"load_x{CONSUMERS}{suffix}",
        seconds=round(wall, 3),
        consumers=CONSUMERS,
        requests=len(calls),
        requests_per_s=round(len(calls) / wall),
        requests_per_s_median_second=statistics.median(full_seconds) if full_seconds else None,
        coordinator_cpu_seconds=round(coordinator_cpu, 2),
        coordinator_cpu_us_per_request=round(coordinator_cpu / len(calls) * 1e6),
        load_cpu_seconds=round(sum(out["cpu_seconds"] for out in outs), 2),
        in_flight_max=LOAD_PROCESSES * THREADS,
        epochs=EPOCHS,
        units_per_epoch=units // EPOCHS,
        rows_per_unit=WINDOW_ROWS,
        slices=SLICES,
        jobs=sorted(jobs),
    )
    for action, latencies in sorted(by_action.items()):
        record(
            GROUP,
            f"{action}_x{CONSUMERS}{suffix}",
            count=len(latencies),
            p50_ms=round(_percentile(latencies, 0.50) * 1e3, 2),
            p99_ms=round(_percentile(latencies, 0.99) * 1e3, 2),
            max_ms=round(max(latencies) * 1e3, 2),
        )
