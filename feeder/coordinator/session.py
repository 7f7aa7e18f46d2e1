"""Start a feeder: pin a snapshot, plan slices, run the coordinator and the data nodes.

``serve(table, ...)`` validates everything the user gave *before* any node
starts (unknown table or column, unparsable filter, missing snapshot →
SpecError) and returns a :class:`Feeder`. ``python -m feeder serve TABLE ...``
(and ``icefeed feeder serve``, both in :mod:`feeder.cli`) run one in the
foreground until SIGTERM/SIGINT — the entry point of the feeder's SparkApplication.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from feeder.coordinator.config import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_SLICE_BYTES,
    FeederConfig,
)
from feeder.protocol.config import DEFAULT_HEARTBEAT_SECONDS, TLSConfig, load_token
from jobs.errors import FeederError, SpecError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyspark.sql import SparkSession

    from feeder.coordinator.launcher import NodeLauncher
    from feeder.coordinator.metrics import FeederMetrics
    from feeder.coordinator.service import Coordinator, ServedSnapshot

log = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT = 600.0  # seconds Feeder.wait_ready waits by default


def _load_table(catalog: Catalog | str | None, name: str) -> Table:
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from jobs.catalog import load_catalog

    cat = catalog if catalog is not None and not isinstance(catalog, str) else load_catalog(catalog)
    try:
        return cat.load_table(name)
    except (NoSuchTableError, NoSuchNamespaceError, ValueError) as exc:
        raise SpecError(f"table: {name!r} not found in catalog {cat.name!r} ({exc})") from exc


def resolve(config: FeederConfig, catalog: Catalog | str | None) -> ServedSnapshot:
    """Pin the snapshot and plan the slices of ``config.table``; nothing is started.

    Raises SpecError for an unknown table or column, an unparsable filter (or one
    naming an unknown column) and a snapshot that does not exist.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.parser import parse
    from pyiceberg.expressions.visitors import bind

    from feeder.coordinator.planning import plan_slices
    from feeder.coordinator.service import ServedSnapshot
    from feeder.node.materialize import SliceSource

    table = _load_table(catalog, config.table)
    if config.snapshot_id is not None:
        snapshot = table.snapshot_by_id(config.snapshot_id)
        if snapshot is None:
            known = [s.snapshot_id for s in table.snapshots()][-5:]
            raise SpecError(
                f"snapshot_id: {config.snapshot_id} does not exist in {config.table} "
                f"(latest snapshots: {known})"
            )
    else:
        snapshot = table.current_snapshot()
    schema = table.schema()
    if snapshot is not None and snapshot.schema_id is not None:
        schema = table.schemas().get(snapshot.schema_id, schema)
    names = [f.name for f in schema.fields]
    if config.columns is not None:
        unknown = [c for c in config.columns if c not in names]
        if unknown:
            raise SpecError(f"columns: unknown column(s) {unknown} in {config.table}; have {names}")
    expression: Any = AlwaysTrue()
    if config.row_filter:
        try:
            expression = parse(config.row_filter)
            bind(schema, expression, case_sensitive=True)
        except (
            Exception
        ) as exc:  # pyparsing and pyiceberg raise several types; all mean "bad filter"
            raise SpecError(
                f"row_filter: {config.row_filter!r} is not a valid filter for {config.table}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    snapshot_id = snapshot.snapshot_id if snapshot is not None else None
    plans = (
        plan_slices(
            table,
            snapshot_id=snapshot_id,
            row_filter=config.row_filter,
            columns=config.columns,
            slice_bytes=config.slice_bytes,
        )
        if snapshot is not None
        else []
    )
    source = SliceSource(
        table, snapshot_id=snapshot_id, row_filter=config.row_filter, columns=config.columns
    )
    return ServedSnapshot(
        table=config.table,
        snapshot_id=snapshot_id,
        metadata_location=table.metadata_location,
        io_properties=dict(table.io.properties),
        row_filter=config.row_filter,
        columns=config.columns,
        schema=source.schema(),
        plans=tuple(plans),
    )


@dataclass
class Feeder:
    """A running feeder session: coordinator in this process, data nodes as Spark jobs."""

    config: FeederConfig
    spark: SparkSession
    catalog: Catalog | str | None
    coordinator: Coordinator
    launcher: NodeLauncher
    metrics: FeederMetrics | None
    batch_rows: int | None = None

    @property
    def endpoint(self) -> str:
        """``grpc://host:port`` (or ``grpc+tls://``) of the coordinator."""
        return self.coordinator.endpoint

    @property
    def snapshot_id(self) -> int | None:
        """The pinned snapshot (None for a table without snapshots)."""
        return self.coordinator.served.snapshot_id

    def status(self) -> dict[str, Any]:
        """The JSON-able status document (PROTOCOL.md)."""
        return self.coordinator.status()

    def fresh_status(self, timeout: float = 30.0) -> dict[str, Any]:
        """The status once every live node has sent a heartbeat after this call.

        Node counters (``storage_bytes_read``, ``rows_served``, ...) reach the
        coordinator only with heartbeats, so a plain :meth:`status` may be a
        heartbeat behind; this one includes everything the nodes did before the call.

        Args:
            timeout: Seconds to wait for the heartbeats.

        Returns:
            The status document (PROTOCOL.md).

        Raises:
            FeederError: If a live node sent no heartbeat within ``timeout``.
        """
        before = {n["node_id"]: n["heartbeats"] for n in self.status()["nodes"]}

        def fresh(status: dict[str, Any]) -> bool:
            return all(
                n["heartbeats"] > before.get(n["node_id"], 0) for n in status["nodes"] if n["alive"]
            )

        if not self.coordinator.wait_for(fresh, timeout):
            raise FeederError(
                f"no fresh heartbeat from every live node within {timeout:.0f}s; "
                "check the nodes' logs (feeder.status()['nodes'])"
            )
        return self.status()

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> Feeder:
        """Block until every slice is cached; raises FeederError after ``timeout`` seconds."""
        if not self.coordinator.wait_ready(timeout):
            status = self.status()
            raise FeederError(
                f"feeder not ready after {timeout:.0f}s: {status['slices_cached']} of "
                f"{status['slices']} slices cached, {status['nodes_alive']} nodes alive; "
                f"node failures: {self.launcher.failures[-3:]}"
            )
        return self

    def refresh(self) -> int | None:
        """Serve the table's current snapshot from now on; return its id.

        A no-op if the snapshot did not change. Otherwise the nodes stop, a new
        coordinator session starts on the same port (consumers start their next
        epoch against it) and new nodes cache the new snapshot.
        """
        served = resolve(
            FeederConfig(**{**self.config.__dict__, "snapshot_id": None}), self.catalog
        )
        if served.snapshot_id == self.snapshot_id:
            return self.snapshot_id
        port = self.coordinator.port
        self._stop_session()
        self.coordinator, self.launcher = _start_session(
            served,
            self.config,
            self.spark,
            port=port,
            metrics=self.metrics,
            batch_rows=self.batch_rows,
        )
        log.info("feeder refreshed to snapshot %s", served.snapshot_id)
        return served.snapshot_id

    def _stop_session(self) -> None:
        self.coordinator.request_stop()
        self.launcher.stop(timeout=max(10.0, 5 * self.config.heartbeat_seconds))
        self.coordinator.close()

    def stop(self) -> None:
        """Stop the nodes (their caches are deleted) and the coordinator."""
        self._stop_session()
        if self.metrics is not None:
            self.metrics.close()
        log.info("feeder at %s stopped", self.endpoint)

    def __enter__(self) -> Feeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_session(
    served: ServedSnapshot,
    config: FeederConfig,
    spark: SparkSession,
    *,
    port: int,
    metrics: FeederMetrics | None,
    batch_rows: int | None = None,
) -> tuple[Coordinator, NodeLauncher]:
    from feeder.coordinator.launcher import NodeLauncher, NodeTaskSpec
    from feeder.coordinator.service import Coordinator
    from feeder.protocol.tickets import TicketSigner, new_key

    sc = spark.sparkContext
    nodes = config.nodes or max(1, int(sc.defaultParallelism))
    key = new_key()
    coordinator = Coordinator(
        served,
        signer=TicketSigner(key),
        slots=nodes,
        host=config.host,
        port=port,
        token=config.token,
        tls=config.tls,
        lease_seconds=config.lease_seconds,
        heartbeat_seconds=config.heartbeat_seconds,
        metrics=metrics,
    )
    spec = NodeTaskSpec(
        coordinator_endpoint=_reachable(coordinator.endpoint, config.tls),
        ticket_key=key,
        token=config.token,
        tls=config.tls,
        cache_dir=str(config.cache_dir) if config.cache_dir is not None else None,
        host=config.host,
        heartbeat_seconds=config.heartbeat_seconds,
        batch_rows=batch_rows,
        row_copy=config.row_copy,
    )
    launcher = NodeLauncher(sc, spec, nodes=nodes, on_node_lost=coordinator.node_lost)
    try:
        launcher.start()
    except Exception:
        coordinator.close()
        raise
    log.info(
        "feeder serving %s snapshot %s at %s: %d slices, %d data nodes",
        served.table,
        served.snapshot_id,
        coordinator.endpoint,
        len(served.plans),
        nodes,
    )
    return coordinator, launcher


def _reachable(endpoint: str, tls: TLSConfig | None) -> str:
    """The coordinator address nodes dial: a wildcard bind is reached via this host's name."""
    import socket

    from feeder.protocol.auth import location_uri

    scheme_host, _, port = endpoint.rpartition(":")
    host = scheme_host.split("://", 1)[1].strip("[]")
    if host in ("0.0.0.0", "::"):
        return location_uri(socket.gethostbyname(socket.gethostname()), int(port), tls)
    return endpoint


def serve(
    table: str,
    *,
    spark: SparkSession | None = None,
    catalog: Catalog | str | None = None,
    columns: Sequence[str] | None = None,
    row_filter: str | None = None,
    snapshot_id: int | None = None,
    nodes: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | SecretStr | None = None,
    tls: TLSConfig | None = None,
    cache_dir: Path | str | None = None,
    slice_bytes: int = DEFAULT_SLICE_BYTES,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    metrics_port: int | None = None,
    batch_rows: int | None = None,
    row_copy: bool = True,
) -> Feeder:
    """Start a feeder for ``table`` and return it (nodes cache in the background).

    ``token=None`` reads ``ICEFEED_TOKEN`` / ``ICEFEED_TOKEN_FILE`` (no token: an
    open feeder). ``batch_rows`` caps the rows per Arrow batch a node sends
    (default: the node's, 128 Ki rows). ``row_copy=False`` makes nodes cache no
    row-major copy of fixed-width columns: about half the disk for such tables, at
    the cost of slower shuffled reads (docs/concepts.md, The cache). Raises SpecError
    for bad input, before any node starts.
    """
    if batch_rows is not None and (not isinstance(batch_rows, int) or batch_rows < 1):
        raise SpecError(f"batch_rows: {batch_rows!r} must be an integer >= 1")
    if isinstance(columns, str):
        raise SpecError("columns: give a list of column names, not one string")
    config = FeederConfig(
        table=table,
        columns=tuple(columns) if columns is not None else None,
        row_filter=row_filter,
        snapshot_id=snapshot_id,
        nodes=nodes,
        host=host,
        port=port,
        token=load_token(token),
        tls=tls,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        slice_bytes=slice_bytes,
        lease_seconds=lease_seconds,
        heartbeat_seconds=heartbeat_seconds,
        metrics_port=metrics_port,
        catalog=catalog if isinstance(catalog, str) else None,
        row_copy=row_copy,
    )
    served = resolve(config, catalog)
    if spark is None:
        from jobs.spark import get_spark

        spark = get_spark("icefeed-feeder")
    metrics = None
    if config.metrics_port is not None:
        from feeder.coordinator.metrics import FeederMetrics

        metrics = FeederMetrics(port=config.metrics_port, host=config.host)
    coordinator, launcher = _start_session(
        served, config, spark, port=config.port, metrics=metrics, batch_rows=batch_rows
    )
    return Feeder(
        config=config,
        spark=spark,
        catalog=catalog,
        coordinator=coordinator,
        launcher=launcher,
        metrics=metrics,
        batch_rows=batch_rows,
    )
