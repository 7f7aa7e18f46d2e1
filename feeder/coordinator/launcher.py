"""Run the feeder's data nodes as Spark tasks: ONE Spark job per node, each from its own thread.

Why not one barrier stage: Spark relaunches *every* task of a barrier stage
when one fails, so one node's death would restart all nodes. With one job per
node (``sc.parallelize([node_id], 1).mapPartitions(run).collect()`` under the
node's own job group), a killed node fails only its own job; this launcher
then declares the node dead at the coordinator and starts a replacement as a
new job. Stopping: the coordinator tells every node to stop at its next
heartbeat; jobs still running after a grace period are cancelled by job group.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from feeder.node.settings import NodeSettings

if TYPE_CHECKING:
    from pyspark import SparkContext

log = logging.getLogger(__name__)

DEFAULT_MAX_RESTARTS = 3
#: a node that ran this long before failing was healthy: its slot's restart count resets
DEFAULT_HEALTHY_SECONDS = 600.0


@dataclass(frozen=True, kw_only=True)
class NodeTaskSpec:
    """What a data-node Spark task needs (pickled into the task closure; holds the key).

    ``settings`` come from the session's ``FeederConfig.node_settings()``.
    """

    coordinator_endpoint: str
    ticket_key: bytes = field(repr=False)
    settings: NodeSettings = field(default_factory=NodeSettings)


def node_partition(node_id: str, spec: NodeTaskSpec) -> Callable[[Iterable[Any]], Iterator[str]]:
    """Return the ``mapPartitions`` function that runs data node ``node_id`` until told to stop."""

    def run(_rows: Iterable[Any]) -> Iterator[str]:
        import json

        from feeder.node.task import run_data_node

        settings = spec.settings
        advertise = settings.advertised_host()
        if not settings.host:
            settings = replace(settings, host="0.0.0.0")
        stats = run_data_node(
            node_id,
            spec.coordinator_endpoint,
            ticket_key=spec.ticket_key,
            settings=settings,
            advertise_host=advertise,
        )
        yield json.dumps(stats)

    return run


class NodeLauncher:
    """Starts ``nodes`` data nodes on ``sc`` and replaces those whose Spark job ends early.

    ``on_node_lost(node_id, reason)`` is called (from the node's driver thread)
    when a node's job fails or ends while the feeder is not stopping. A slot is
    restarted at most ``max_restarts`` times in a row: a node that ran at least
    ``healthy_seconds`` before it failed resets its slot's count, so a feeder that
    runs for weeks survives one node loss a day.
    """

    def __init__(
        self,
        sc: SparkContext,
        spec: NodeTaskSpec,
        *,
        nodes: int,
        on_node_lost: Callable[[str, str], None],
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        session: str | None = None,
        healthy_seconds: float = DEFAULT_HEALTHY_SECONDS,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes {nodes} must be >= 1")
        self._sc = sc
        self._spec = spec
        self.nodes = nodes
        self._on_node_lost = on_node_lost
        self.max_restarts = max_restarts
        self.healthy_seconds = healthy_seconds
        self.session = session or uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: dict[str, threading.Thread] = {}
        self._restarts = [0] * nodes
        self.failures: list[tuple[str, str]] = []

    def group(self, node_id: str) -> str:
        """The Spark job group of node ``node_id``."""
        return f"icefeed-{node_id}"

    def start(self) -> None:
        """Launch every node's Spark job (returns at once)."""
        for slot in range(self.nodes):
            self._launch(slot, 0)

    def _launch(self, slot: int, generation: int) -> None:
        node_id = f"{self.session}-n{slot}" + (f"r{generation}" if generation else "")
        thread = threading.Thread(
            target=self._run,
            args=(node_id, slot, generation),
            name=f"icefeed-node-{node_id}",
            daemon=True,
        )
        with self._lock:
            if self._stopping:
                return
            self._threads[node_id] = thread
            thread.start()  # under the lock: stop() never joins a thread not yet started
        log.info("launching data node %s (slot %d) as its own Spark job", node_id, slot)

    def _run(self, node_id: str, slot: int, generation: int) -> None:
        sc = self._sc
        sc.setJobGroup(self.group(node_id), f"icefeed data node {node_id}", interruptOnCancel=True)
        started = time.monotonic()
        try:
            sc.parallelize([node_id], 1).mapPartitions(
                node_partition(node_id, self._spec)
            ).collect()
            reason = "its Spark job ended"
        except Exception as exc:  # py4j/Spark raise many types; the job's failure is the news
            reason = f"its Spark job failed: {str(exc).splitlines()[0][:300]}"
        with self._lock:
            stopping = self._stopping
            self._threads.pop(node_id, None)
        if stopping:
            log.info("data node %s stopped", node_id)
            return
        self.failures.append((node_id, reason))
        if time.monotonic() - started >= self.healthy_seconds:
            self._restarts[slot] = 0  # it was healthy: this loss starts a fresh count
        self._on_node_lost(node_id, reason)
        if self._restarts[slot] >= self.max_restarts:
            log.error(
                "data node slot %d failed %d times; not restarting it", slot, self.max_restarts + 1
            )
            return
        self._restarts[slot] += 1
        self._launch(slot, generation + 1)

    def stop(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for nodes told to stop to finish; cancel the rest.

        The caller first tells the nodes to stop (``Coordinator.request_stop``).
        """
        with self._lock:
            self._stopping = True
            threads = dict(self._threads)
        for node_id, thread in threads.items():
            thread.join(timeout=timeout)
            if thread.is_alive():
                log.warning("data node %s did not stop in time; cancelling its job", node_id)
                self._sc.cancelJobGroup(self.group(node_id))
                thread.join(timeout=timeout)
