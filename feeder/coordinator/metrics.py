"""Prometheus metrics of a feeder session (optional ``icefeed[metrics]`` extra).

The coordinator owns one :class:`FeederMetrics` on its own registry (so two
feeders in one process do not collide) and, when a port is given, serves it
over HTTP. Per-node figures come from the nodes' heartbeats and are exposed
as gauges labelled by node id; coordinator events (leases, expiries, errors,
consumers) are counted here directly. Job labels are bounded: the first
``metric_jobs`` job names get their own label, later ones share ``job="other"``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from feeder.node.metrics import NODE_COUNTERS, NODE_GAUGES, node_families
from jobs.extras import require

log = logging.getLogger(__name__)

OTHER_JOBS = "other"  # the job label of every job past the first ``metric_jobs``

#: seconds buckets of request durations: 0.5 ms .. 10 s
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class _NodeStats:
    """A collector of the nodes' latest heartbeat figures (counters and gauges by node)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, int]] = {}

    def update(self, node_id: str, stats: Mapping[str, int]) -> None:
        known = {k: int(v) for k, v in stats.items() if k in NODE_COUNTERS or k in NODE_GAUGES}
        with self._lock:
            self._stats.setdefault(node_id, {}).update(known)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            snapshot = {node: dict(stats) for node, stats in self._stats.items()}
        return node_families(snapshot)


class FeederMetrics:
    """Counters and gauges of one feeder; ``port`` (if not None) serves ``/metrics``."""

    def __init__(
        self, *, port: int | None = None, host: str = "127.0.0.1", metric_jobs: int = 32
    ) -> None:
        prom = require("prometheus_client", "metrics")
        self.metric_jobs = metric_jobs
        self._job_labels: set[str] = set()
        self._labels_lock = threading.Lock()
        self.registry = prom.CollectorRegistry()
        self._node = _NodeStats()
        self.registry.register(self._node)
        self.request_seconds = prom.Histogram(
            "icefeed_coordinator_request_seconds",
            "time the coordinator took to answer a call, by call (plan, lease, heartbeat, ...)",
            ["call"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.nodes_alive = prom.Gauge(
            "icefeed_nodes_alive", "live data nodes", registry=self.registry
        )
        self.ready = prom.Gauge(
            "icefeed_ready", "1 once every slice is cached", registry=self.registry
        )
        self.consumers = prom.Gauge(
            "icefeed_active_consumers", "consumers seen per job", ["job"], registry=self.registry
        )
        self.leases = prom.Counter(
            "icefeed_leases", "dynamic-mode leases granted", ["job"], registry=self.registry
        )
        self.lease_expiries = prom.Counter(
            "icefeed_lease_expiries", "dynamic-mode leases expired", ["job"], registry=self.registry
        )
        self.rows_leased = prom.Counter(
            "icefeed_rows_leased",
            "dynamic-mode rows leased, by whether the consumer's host is the host of the node "
            "it reads them from first (local) or not (locality, docs/feeder.md)",
            ["job", "local"],
            registry=self.registry,
        )
        self.plans = prom.Counter(
            "icefeed_static_plans",
            "static-mode epoch plans served",
            ["job"],
            registry=self.registry,
        )
        self.errors = prom.Counter(
            "icefeed_coordinator_errors",
            "coordinator calls refused",
            ["kind"],
            registry=self.registry,
        )
        self.nodes_lost = prom.Counter(
            "icefeed_nodes_lost", "data nodes declared dead", registry=self.registry
        )
        self.snapshot = prom.Info(
            "icefeed_snapshot",
            "the snapshot new epochs read (a label: snapshot ids exceed a float's precision)",
            registry=self.registry,
        )
        self.refreshes = prom.Counter(
            "icefeed_refreshes",
            "refreshes to a newer snapshot of the table",
            registry=self.registry,
        )
        self.refresh_storage_bytes = prom.Counter(
            "icefeed_refresh_storage_bytes_read",
            "table storage bytes read to cache the slices refreshes added",
            registry=self.registry,
        )
        self.port: int | None = None
        self._server: Any = None
        if port is not None:
            server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
            self._server = server
            self.port = int(server.server_port)
            log.info("metrics on http://%s:%d/metrics", host, self.port)

    def set_snapshot(self, snapshot_id: int | None) -> None:
        """Publish the snapshot new epochs read."""
        self.snapshot.info({"snapshot_id": str(snapshot_id)})

    def job_label(self, job: str) -> str:
        """Return the label to count ``job`` under (its name, or ``"other"`` past the cap)."""
        with self._labels_lock:
            if job in self._job_labels:
                return job
            if len(self._job_labels) < self.metric_jobs and job != OTHER_JOBS:
                self._job_labels.add(job)
                return job
        return OTHER_JOBS

    def node_stats(self, node_id: str, stats: Mapping[str, int]) -> None:
        """Publish one node's heartbeat stats."""
        self._node.update(node_id, stats)

    def render(self) -> bytes:
        """The metrics in Prometheus text format (what ``/metrics`` serves)."""
        prom = require("prometheus_client", "metrics")
        return bytes(prom.generate_latest(self.registry))

    def close(self) -> None:
        """Stop the HTTP server if one was started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
