"""A data node's own Prometheus ``/metrics`` (optional ``icefeed[metrics]`` extra).

The node's heartbeat counters (:class:`feeder.node.datanode.NodeStats`) as
Prometheus families: cumulative figures are counters (``..._total``), levels
gauges, labelled by node id. The coordinator exports the same families for every
node from their heartbeats (:mod:`feeder.coordinator.metrics`); a node serves its
own when started with ``node_metrics_port`` (the chart's scrape annotations on the
executor pods point at it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jobs.extras import require

log = logging.getLogger(__name__)

#: cumulative per-node figures: exposed as counters, ``..._total``
NODE_COUNTERS = {
    "rows_served": "rows served by a data node",
    "rows_served_local": "rows a data node handed to consumers on its host as cache files",
    "rows_served_ordered": "rows a data node served as whole MIX windows it ordered itself",
    "rows_served_same_host": "rows a data node served to consumers on its own host (locality)",
    "bytes_served": "Arrow bytes served by a data node",
    "storage_bytes_read": "bytes a data node read from table storage",
    "errors": "errors a data node answered",
}
#: per-node levels: exposed as gauges
NODE_GAUGES = {
    "slices_cached": "slices cached by a data node",
    "cache_bytes": "bytes of a data node's cache files",
}


def node_families(stats_by_node: Mapping[str, Mapping[str, int]]) -> Iterator[Any]:
    """Yield the Prometheus metric families of ``{node id: its stats}``."""
    core = require("prometheus_client.core", "metrics")
    kinds = ((NODE_COUNTERS, core.CounterMetricFamily), (NODE_GAUGES, core.GaugeMetricFamily))
    for names, kind in kinds:
        for key, doc in names.items():
            family = kind(f"icefeed_node_{key}", doc, labels=["node"])
            for node, stats in stats_by_node.items():
                if key in stats:
                    family.add_metric([node], stats[key])
            yield family


class _OneNode:
    def __init__(self, node_id: str, stats: Callable[[], Mapping[str, int]]) -> None:
        self._node_id, self._stats = node_id, stats

    def collect(self) -> Iterator[Any]:
        return node_families({self._node_id: self._stats()})


class NodeMetricsServer:
    """Serves one node's metrics over HTTP at ``host:port`` (0: a free port; see ``port``).

    Raises:
        MissingExtraError: prometheus_client is not installed.
        OSError: the port cannot be bound.
    """

    def __init__(
        self, node_id: str, stats: Callable[[], Mapping[str, int]], *, host: str, port: int
    ) -> None:
        prom = require("prometheus_client", "metrics")
        registry = prom.CollectorRegistry()
        registry.register(_OneNode(node_id, stats))
        self._server, _thread = prom.start_http_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_port)
        log.info("data node %s: metrics on http://%s:%d/metrics", node_id, host, self.port)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
