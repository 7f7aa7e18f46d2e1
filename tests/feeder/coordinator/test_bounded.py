"""Bounded coordinator state over real Flight: lease books, jobs, job names, status, metrics.

The RSS test runs the feeder in its own process (bounded_process.py) and reads
that process's RSS from /proc, so the test's own allocations do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.flight as flight
import pytest

from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.metrics import FeederMetrics
from feeder.protocol.auth import call_options
from feeder.protocol.messages import LeaseRequest
from feeder.protocol.wire_errors import ErrorCode, error_code
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import make_table

ROOT = Path(__file__).resolve().parents[3]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _act(client: flight.FlightClient, name: str, body: dict, job: str) -> dict:
    options = call_options(None, job)
    raw = json.dumps(body).encode()
    (result,) = client.do_action(flight.Action(name, raw), options)
    return json.loads(result.body.to_pybytes())


def _epoch(client: flight.FlightClient, job: str, epoch: int) -> None:
    """Lease the one unit of ``job``'s ``epoch`` and acknowledge it: a finished lease book."""
    body = LeaseRequest(job=job, epoch=epoch, consumer="c").to_body()
    (result,) = client.do_action(flight.Action("lease", body), call_options(None, job))
    lease = json.loads(result.body.to_pybytes())
    assert lease["unit"] is not None, lease
    done = _act(
        client, "done", {"job": job, "epoch": epoch, "consumer": "c", "lease": lease["lease"]}, job
    )
    assert done == {"acknowledged": True}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_twenty_thousand_epochs_keep_rss_and_status_bounded(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.feeder.coordinator.bounded_process", str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("endpoint "), line
        client = flight.connect(line.split()[1])
        jobs = [f"job-{k}" for k in range(4)]
        epoch = 0
        for epoch in range(1_000):  # warm up: allocator pools, every job's retired list
            _epoch(client, jobs[epoch % 4], epoch)
        before = _rss_kib(proc.pid)
        for epoch in range(1_000, 20_000):
            _epoch(client, jobs[epoch % 4], epoch)
        grown = _rss_kib(proc.pid) - before
        status = _act(client, "status", {}, "any")
        assert grown < 4 * 1024, f"RSS grew by {grown} KiB over 19,000 lease books"
        assert len(json.dumps(status)) < 8 * 1024
        assert sorted(status["jobs"]) == jobs
        assert all(
            len(j["epochs"]) <= 5 and j["epochs_started"] == 5_000 for j in status["jobs"].values()
        )
        # an evicted finished epoch still answers "done", never a fresh book of its rows
        assert _lease(client, "job-0", 19_980)["epoch_done"] is True
        with pytest.raises(flight.FlightServerError, match="older than the epochs this feeder"):
            _lease(client, "job-0", 0)
        client.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    home = tmp_path_factory.mktemp("bounded")
    (home / "warehouse").mkdir()
    cat = SqlCatalog("bounded", **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=1, rows_per_file=100, row_group_rows=100)
    return cat


def _lease(client: flight.FlightClient, job: str, epoch: int) -> dict:
    body = LeaseRequest(job=job, epoch=epoch, consumer="c").to_body()
    (result,) = client.do_action(flight.Action("lease", body), call_options(None, job))
    return json.loads(result.body.to_pybytes())


def test_live_jobs_open_epochs_and_job_names_are_capped(catalog, tmp_path):
    limits = CoordinatorLimits(max_jobs=3, max_open_epochs=2)
    with local_feeder(
        catalog, cache_dir=tmp_path / "cache", nodes=1, slice_bytes=1 << 30, limits=limits
    ) as feed:
        client = flight.connect(feed.endpoint)
        for job in ("a", "b", "c"):
            assert _lease(client, job, 0)["unit"] is not None
        with pytest.raises(flight.FlightServerError, match=r"3 live jobs .*max_jobs=3") as full:
            _lease(client, "d", 0)
        assert error_code(full.value) is ErrorCode.LIMIT
        assert _lease(client, "a", 1)["unit"] is not None
        refused = r"2 unfinished epochs .*max_open_epochs=2"
        with pytest.raises(flight.FlightServerError, match=refused):
            _lease(client, "a", 2)
        for bad in ("", "-x", "a b", "x" * 129, "job\n", "é"):
            body = {"job": bad, "epoch": 0, "consumer": "c"}
            with pytest.raises(flight.FlightServerError, match="is not a job name"):
                _act(client, "lease", body, "x")
        assert sorted(feed.coordinator.status()["jobs"]) == ["a", "b", "c"]
        client.close()


def test_metric_job_labels_are_capped(catalog, tmp_path):
    metrics = FeederMetrics(metric_jobs=2)
    with local_feeder(
        catalog, cache_dir=tmp_path / "cache", nodes=1, slice_bytes=1 << 30, metrics=metrics
    ) as feed:
        client = flight.connect(feed.endpoint)
        for k in range(6):
            _lease(client, f"m{k}", 0)
        client.close()
    text = metrics.render().decode()
    labels = {
        part.split('"')[1]
        for line in text.splitlines()
        if line.startswith("icefeed_leases_total{")
        for part in [line[line.index("job=") :]]
    }
    assert labels == {"m0", "m1", "other"}
