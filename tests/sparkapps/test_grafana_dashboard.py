"""The chart's Grafana dashboard: rendered by real helm, and every query names real series.

The series come from the code that exports them — a FeederMetrics (coordinator),
the node families and a DataWait histogram, each with one observation — so a
renamed metric or label breaks this test instead of leaving a panel empty.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.sparkapps.test_helm import by_kind, helm, template  # noqa: F401 - helm: a fixture

pytestmark = pytest.mark.k8s
prom = pytest.importorskip("prometheus_client")  # the metrics extra, in the dev env


def _exported() -> dict[str, set[str]]:
    """Every sample name the feeder's code exports, with the label names it carries."""
    from feeder.coordinator.metrics import FeederMetrics
    from feeder.torch.data_wait import DataWait

    metrics = FeederMetrics()
    metrics.node_stats(
        "n0",
        {
            k: 1
            for k in (
                "rows_served",
                "bytes_served",
                "storage_bytes_read",
                "errors",
                "slices_cached",
                "cache_bytes",
            )
        },
    )
    metrics.request_seconds.labels(call="lease").observe(0.01)
    for counter in (metrics.leases, metrics.lease_expiries, metrics.plans):
        counter.labels(job="j").inc()
    metrics.consumers.labels(job="j").set(1)
    metrics.rows_leased.labels(job="j", local="true").inc(8)
    metrics.errors.labels(kind="lease").inc()
    metrics.nodes_lost.inc()
    registry = prom.CollectorRegistry()
    waits = DataWait(prometheus_registry=registry)
    list(waits.wrap([1, 2]))
    text = metrics.render().decode() + prom.generate_latest(registry).decode()
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
        if match and not line.startswith("#"):
            labels = set(re.findall(r'(\w+)="', match.group(2) or ""))
            found.setdefault(match.group(1), set()).update(labels)
    return found


def test_the_dashboard_configmap_renders_only_when_asked(helm: str) -> None:  # noqa: F811
    default = by_kind(template(helm), "ConfigMap")
    assert not [c for c in default if c["metadata"]["name"].endswith("-dashboard")]
    maps = by_kind(template(helm, "--set", "metrics.grafanaDashboard.enabled=true"), "ConfigMap")
    (dashboard,) = [c for c in maps if c["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["icefeed-feeder.json"])
    assert board["uid"] == "icefeed-feeder" and len(board["panels"]) >= 8


def test_every_query_names_exported_series_and_their_labels(helm: str) -> None:  # noqa: F811
    maps = by_kind(template(helm, "--set", "metrics.grafanaDashboard.enabled=true"), "ConfigMap")
    (dashboard,) = [c for c in maps if c["metadata"]["name"].endswith("-dashboard")]
    board = json.loads(dashboard["data"]["icefeed-feeder.json"])
    exported = _exported()
    queries = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert queries
    for expr in queries:
        names = re.findall(r"\bicefeed_[a-z_]+\b", expr)
        assert names, expr
        for name in names:
            assert name in exported, (
                f"{name} (in {expr!r}) is not exported; have {sorted(exported)}"
            )
            for group in re.findall(r"by \(([^)]*)\)", expr):
                for label in (x.strip() for x in group.split(",")):
                    assert label in exported[name], f"{name} has no label {label!r}: {expr}"
