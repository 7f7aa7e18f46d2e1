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
from collections.abc import Mapping
from typing import Any

from jobs.extras import require

log = logging.getLogger(__name__)

OTHER_JOBS = "other"  # the job label of every job past the first ``metric_jobs``

NODE_GAUGES = {
    "rows_served": "rows served by a data node",
    "bytes_served": "Arrow bytes served by a data node",
    "slices_cached": "slices cached by a data node",
    "cache_bytes": "bytes of a data node's cache files",
    "storage_bytes_read": "bytes a data node read from table storage",
    "errors": "errors a data node answered",
}


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
        self._node = {
            key: prom.Gauge(f"icefeed_node_{key}", doc, ["node"], registry=self.registry)
            for key, doc in NODE_GAUGES.items()
        }
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
        self.port: int | None = None
        self._server: Any = None
        if port is not None:
            server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
            self._server = server
            self.port = int(server.server_port)
            log.info("metrics on http://%s:%d/metrics", host, self.port)

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
        for key, gauge in self._node.items():
            if key in stats:
                gauge.labels(node=node_id).set(stats[key])

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
