"""Prometheus metrics of a running feeder, scraped over HTTP."""

from __future__ import annotations

import re
import urllib.request

import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.metrics import FeederMetrics
from jobs.errors import SpecError
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table


def _value(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_metrics_count_leases_consumers_nodes_and_errors(catalog, tmp_path):
    make_table(catalog, files=2, rows_per_file=1000, row_group_rows=250)
    metrics = FeederMetrics(port=0)
    try:
        with local_feeder(catalog, cache_dir=tmp_path / "c", nodes=2, metrics=metrics) as f:
            client = FeederClient(f.endpoint, job="m")
            # slice order: one lease per slice (a MIX window would hold this small table whole)
            assert len(ids_of(client.stream(0, mode="dynamic", shuffle="slice"))) == 2000
            assert len(ids_of(client.stream(0, rank=0, world_size=2))) == 1000
            # a bad request is a coded FlightServerError (invalid_argument): SpecError
            with pytest.raises(SpecError):
                list(client.stream(0, columns=["nope"]))
            f.coordinator.wait_for(lambda s: all(n["rows_served"] > 0 for n in s["nodes"]), 10)
            url = f"http://127.0.0.1:{metrics.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
    finally:
        metrics.close()
    assert _value(text, 'icefeed_leases_total{job="m"}') >= 2
    # locality: the nodes and the client all run on this machine's host
    assert _value(text, 'icefeed_rows_leased_total{job="m",local="true"}') == 2000
    assert _value(text, 'icefeed_rows_leased_total{job="m",local="false"}') == 0
    assert _value(text, 'icefeed_static_plans_total{job="m"}') == 1
    assert _value(text, 'icefeed_active_consumers{job="m"}') == 2
    assert _value(text, "icefeed_nodes_alive") == 2
    assert _value(text, "icefeed_ready") == 1
    # cumulative figures are counters (`_total`, TYPE counter); levels are gauges
    assert _value(text, "icefeed_node_rows_served_total") >= 2000
    assert _value(text, "icefeed_node_storage_bytes_read_total") > 0
    assert re.search(r"^# TYPE icefeed_node_rows_served(_total)? counter$", text, re.M)
    assert "# TYPE icefeed_node_slices_cached gauge" in text
    assert _value(text, "icefeed_node_slices_cached") >= 2
    assert _value(text, "icefeed_coordinator_errors_total") >= 1
    # every call is timed: the plan, the leases, the failed one too
    assert "# TYPE icefeed_coordinator_request_seconds histogram" in text
    assert _value(text, 'icefeed_coordinator_request_seconds_count{call="flight_info"}') >= 2
    assert _value(text, 'icefeed_coordinator_request_seconds_count{call="lease"}') >= 2
    assert _value(text, 'icefeed_coordinator_request_seconds_sum{call="lease"}') > 0
