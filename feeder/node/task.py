"""What one Spark task runs to be a data node: start a DataNode, register, cache, heartbeat.

:func:`run_data_node` is the body of one Spark task (see PROTOCOL.md): start a
:class:`feeder.node.datanode.DataNode` on a free port, ``register`` with the
coordinator, materialise the assigned slices (reporting each with ``cached``),
``node_heartbeat`` until told to stop, then shut down and delete its cache. Each of
these node-only calls carries a fresh proof of the session key
(:mod:`feeder.protocol.node_auth`).
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.node.cache import CachedSlice, SliceCache
from feeder.node.cache_dirs import (
    FOLDER_PREFIX,
    claim_folder,
    session_tag,
    sweep_dead_folders,
)
from feeder.node.datanode import DataNode
from feeder.node.local_server import LocalReadServer
from feeder.node.metrics import NodeMetricsServer
from feeder.node.refresh import SourceOpener, apply_refresh
from feeder.node.settings import NodeSettings
from feeder.protocol.auth import (
    call_options,
    connect,
    location_uri,
)
from feeder.protocol.config import warn_if_insecure
from feeder.protocol.hosts import local_host
from feeder.protocol.local_read import MAX_SOCKET_PATH, socket_name
from feeder.protocol.node_auth import KEY_PURPOSE, NodeCallSigner
from feeder.protocol.node_messages import (
    CachedReport,
    NodeHeartbeat,
    NodeHeartbeatAnswer,
    NodeRequest,
    RegisterAnswer,
    RegisterRequest,
)
from feeder.protocol.tickets import (
    TicketSigner,
)
from jobs.errors import FeederError, SpecError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _CoordinatorLink:
    """How a data node calls its coordinator: the connection, the token, node-call proofs."""

    client: flight.FlightClient
    token: str | SecretStr | None
    timeout: float
    prover: NodeCallSigner

    def call(self, request: NodeRequest) -> bytes:
        """Send one node-only action with a fresh proof; return its answer's JSON bytes."""
        payload = request.to_json()
        options = call_options(
            self.token, None, self.timeout, node_proof=self.prover.proof(request.ACTION, payload)
        )
        results = list(self.client.do_action(flight.Action(request.ACTION, payload), options))
        if not results:
            return b"{}"
        return results[0].body.to_pybytes() or b"{}"


def default_cache_root(cache_dir: Path | str | None) -> Path:
    """Return ``cache_dir``, else the first of ``SPARK_LOCAL_DIRS``, else the temp dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    local_dirs = os.environ.get("SPARK_LOCAL_DIRS", "")
    first = local_dirs.split(",")[0].strip()
    return Path(first) if first else Path(tempfile.gettempdir())


DATA_PORT_ENV = "ICEFEED_DATA_PORT"


def data_port(environ: Mapping[str, str]) -> int:
    """Return the port a data node binds: ``$ICEFEED_DATA_PORT`` (set on Kubernetes executors
    so the headless Service and NetworkPolicy match), else 0 for a free port.

    Raises SpecError if the variable is not a port number.
    """
    raw = environ.get(DATA_PORT_ENV, "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SpecError(f"{DATA_PORT_ENV}={raw!r} is not a port number (1-65535)")
    return int(raw)


def run_data_node(
    node_id: str,
    coordinator_endpoint: str,
    *,
    ticket_key: bytes,
    settings: NodeSettings | None = None,
    advertise_host: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Run one data node until the coordinator says stop (the body of one Spark task).

    The node claims its cache folder (:mod:`feeder.node.cache_dirs`), sweeps the
    folders of dead nodes, adopting the verified slices of a dead node of this
    session (reported as cached at once), and deletes its folder on the way out.

    Args:
        node_id: this node's id, unique in the session.
        coordinator_endpoint: where the coordinator listens.
        ticket_key: the session's ticket key (verifies tickets, proves node calls).
        settings: the session's node settings (None: the defaults).
        advertise_host: the address consumers dial (None: ``settings.advertised_host()``).
        timeout: per-call timeout; the node also stops by itself when the
            coordinator stays unreachable this long.

    Returns:
        The node's final stats (``NodeStats`` as a dict).

    Raises:
        FeederError: the node could not register. A failed materialisation
            propagates too, so the node's Spark job fails and the coordinator
            replaces the node.
    """
    settings = settings if settings is not None else NodeSettings()
    tls = settings.tls
    parent = default_cache_root(settings.cache_dir)
    tag = session_tag(ticket_key)
    claimed = claim_folder(parent, f"{FOLDER_PREFIX}{node_id}-{os.getpid()}", tag)
    root = claimed.path
    # folders of nodes SIGKILLed earlier (a persistent hostPath): this session's slices
    # are adopted (checksums verified), everything else deleted
    sweep_dead_folders(parent, adopt_into=root, tag=tag)
    cache = SliceCache(root, row_copy=settings.row_copy)
    adopted = cache.adopt_existing()
    client = connect(coordinator_endpoint, tls=tls)
    signer = TicketSigner(ticket_key)
    link = _CoordinatorLink(
        client, settings.token, timeout, NodeCallSigner(signer.derived_key(KEY_PURPOSE))
    )
    work: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    def report_cached(entry: CachedSlice, storage_bytes: int = 0) -> None:
        report = CachedReport(
            node_id=node_id,
            slice_id=entry.slice_id,
            num_rows=entry.num_rows,
            nbytes=entry.nbytes,
            storage_bytes=storage_bytes,
        )
        for attempt in range(3):
            try:
                link.call(report)
                return
            except flight.FlightError as exc:
                log.warning(
                    "data node %s: reporting slice %d failed (%s)", node_id, entry.slice_id, exc
                )
                stop.wait(0.5 * (attempt + 1))

    node = DataNode(
        location_uri(settings.host, data_port(os.environ), tls),
        signer=signer,
        cache=cache,
        token=settings.token,
        tls=tls,
        batch_rows=settings.batch_rows,
        on_cached=report_cached,
    )
    warn_if_insecure(f"data node {node_id}", settings.host, tls)
    location = location_uri(advertise_host or settings.advertised_host(), node.port, tls)
    metrics = None
    local = None
    try:
        if settings.node_metrics_port is not None:
            metrics = _serve_metrics(node_id, node, settings)
        if settings.local_dir is not None:
            local = _serve_local(node_id, node, settings.local_dir, settings)
        capacity = cache_capacity(root, settings.cache_capacity_bytes, cache.total_bytes())
        node.host = local_host(settings.locality_host)
        assigned = _register(
            link,
            node,
            RegisterRequest(
                node_id=node_id,
                location=location,
                pid=os.getpid(),
                cache_dir=str(root),
                capacity_bytes=capacity,
                local_socket=str(local.path) if local is not None else None,
                host=node.host,
            ),
            coordinator_endpoint,
        )
        for entry in adopted:
            if entry.slice_id in node.plans:
                report_cached(entry)
            else:
                cache.drop(entry.slice_id)
        if adopted:
            log.info("data node %s adopted %d cached slice(s)", node_id, len(adopted))
        for slice_id in assigned:
            work.put(slice_id)
        beat = threading.Thread(
            target=_heartbeat_loop,
            args=(link, node, node_id, work, stop, settings.heartbeat_seconds, timeout),
            name=f"node-{node_id}-heartbeat",
            daemon=True,
        )
        beat.start()
        while not stop.is_set():
            try:
                slice_id = work.get(timeout=0.2)
            except queue.Empty:
                continue
            node.ensure_cached(slice_id)
        beat.join(timeout=timeout)
        return node.stats()
    finally:
        stop.set()
        if local is not None:
            local.close()
        if metrics is not None:
            metrics.close()
        node.shutdown()
        cache.close()
        claimed.release()
        client.close()
        log.info("data node %s stopped", node_id)


def _serve_metrics(node_id: str, node: DataNode, settings: NodeSettings) -> Any:
    """The node's ``/metrics`` server, or None (logged) when its port cannot be bound."""
    port = settings.node_metrics_port
    try:
        return NodeMetricsServer(node_id, node.stats, host=settings.host, port=port or 0)
    except OSError as exc:  # e.g. two nodes on one host given one port: serve rows anyway
        log.error(
            "data node %s: cannot serve metrics on %s:%s (%s); serving none. Nodes that "
            "share a host need node_metrics_port 0 (any free port) or one pod each",
            node_id,
            settings.host,
            port,
            exc,
        )
        return None


def _serve_local(
    node_id: str, node: DataNode, directory: Path, settings: NodeSettings
) -> LocalReadServer | None:
    """The node's local read socket in ``directory``, or None (logged) when it cannot be
    created: consumers then read over Flight."""
    path = directory / socket_name(node_id, os.getpid())
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        log.error(
            "data node %s: local socket path %s is longer than %d bytes (the kernel's limit); "
            "serving no local reads. Use a shorter local_dir",
            node_id,
            path,
            MAX_SOCKET_PATH,
        )
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return LocalReadServer(
            path, grant=node.grant_local, token=settings.token, batch_rows=settings.batch_rows
        )
    except OSError as exc:
        log.error(
            "data node %s: cannot listen on %s (%s); serving no local reads", node_id, path, exc
        )
        return None


def _register(
    link: _CoordinatorLink, node: DataNode, request: RegisterRequest, endpoint: str
) -> list[int]:
    """``register`` with the coordinator, configure ``node``; return the assigned slice ids."""
    node_id, location = request.node_id, request.location
    try:
        answer = RegisterAnswer.from_json(link.call(request))
        opener = SourceOpener(answer)
        sources = [(src, opener.open(src)) for src in answer.snapshot_sources()]
    except (flight.FlightError, SpecError, KeyError, TypeError, ValueError) as exc:
        raise FeederError(
            f"data node {node_id} could not register with the coordinator at {endpoint}: {exc}"
        ) from exc
    plans = answer.plans
    by_id = {p.slice_id: p for p in plans}
    assigned = list(answer.assigned)
    node.configure(snapshot_id=answer.snapshot_id, source=None, plans={})
    for src, source in sources:
        node.add_snapshot(
            snapshot_id=src.snapshot_id,
            source=source,
            plans={s: by_id[s] for s in src.slices if s in by_id},
        )
    node.opener = opener
    log.info(
        "data node %s serving at %s: %d slices planned, %d assigned",
        node_id,
        location,
        len(plans),
        len(assigned),
    )
    return assigned


def _heartbeat_loop(
    link: _CoordinatorLink,
    node: DataNode,
    node_id: str,
    work: queue.Queue[int],
    stop: threading.Event,
    interval: float,
    grace: float,
) -> None:
    """Send ``node_heartbeat`` every ``interval`` s until told to stop.

    Also stops the node (sets ``stop``) after ``grace`` s without an answer
    (the coordinator is gone), or on any unexpected answer.
    """
    last_ok = time.monotonic()
    try:
        while not stop.is_set():
            try:
                beat = NodeHeartbeat(
                    node_id=node_id, stats=node.stats(), jobs=node.take_jobs_read()
                )
                raw = link.call(beat)
            except flight.FlightError as exc:
                if time.monotonic() - last_ok > grace:
                    log.error(
                        "data node %s: coordinator unreachable for %.0fs: %s", node_id, grace, exc
                    )
                    return
            else:
                last_ok = time.monotonic()
                answer = NodeHeartbeatAnswer.from_json(raw)
                apply_refresh(node, answer)
                for slice_id in answer.assign:
                    work.put(slice_id)
                if answer.stop:
                    log.info("coordinator asked data node %s to stop", node_id)
                    return
            stop.wait(interval)
    except Exception:
        log.exception("data node %s: heartbeat failed; stopping", node_id)
        raise
    finally:
        stop.set()


def cache_capacity(root: Path, limit: int | None, cached_bytes: int) -> int:
    """Return the bytes a node offers to cache: the free disk under ``root``, or less.

    Args:
        root: the node's cache folder.
        limit: the operator's cap on the node's cache (``cache_capacity_bytes``), or None.
        cached_bytes: what the cache already holds (adopted slices count against ``limit``).

    Returns:
        ``min(free disk, limit - cached_bytes)``, never below 0.
    """
    stat = os.statvfs(root)
    free = stat.f_bavail * stat.f_frsize
    if limit is None:
        return free
    return max(0, min(free, limit - cached_bytes))
