"""A data node serves its own Prometheus /metrics (what the chart's executor annotations scrape)."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from feeder.client.client import FeederClient
from feeder.node.settings import NodeSettings
from jobs.errors import SpecError
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table

pytest.importorskip("prometheus_client")  # the metrics extra, in the dev env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_a_data_node_serves_its_counters_and_gauges(catalog, tmp_path):
    make_table(catalog, files=2, rows_per_file=1000)
    port = _free_port()
    with local_feeder(catalog, cache_dir=tmp_path / "c", nodes=1, node_metrics_port=port) as f:
        before = _scrape(port)
        assert len(ids_of(FeederClient(f.endpoint).stream(0, shuffle=False))) == 2000
        after = _scrape(port)
    assert before['icefeed_node_rows_served_total{node="t0"}'] == 0
    assert after['icefeed_node_rows_served_total{node="t0"}'] == 2000
    assert after['icefeed_node_bytes_served_total{node="t0"}'] > 0
    assert after['icefeed_node_storage_bytes_read_total{node="t0"}'] > 0
    assert after['icefeed_node_slices_cached{node="t0"}'] >= 2
    assert after['icefeed_node_cache_bytes{node="t0"}'] > 0


def test_a_port_taken_by_another_node_leaves_rows_served_and_metrics_off(catalog, tmp_path):
    make_table(catalog, files=2, rows_per_file=1000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with local_feeder(catalog, cache_dir=tmp_path / "c", nodes=1, node_metrics_port=port) as f:
            assert len(ids_of(FeederClient(f.endpoint).stream(0, shuffle=False))) == 2000


def test_the_port_is_validated():
    with pytest.raises(SpecError, match="node_metrics_port: 70000 must be an integer port"):
        NodeSettings(node_metrics_port=70000)
