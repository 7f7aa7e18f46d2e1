"""Start a feeder: pin a snapshot, plan slices, run the coordinator and the data nodes.

``serve(table_or_config, **settings)`` builds one
:class:`~feeder.coordinator.config.FeederConfig`, validates everything *before* any node
starts (unknown table or column, unparsable filter, missing snapshot →
SpecError) and returns a :class:`Feeder`. ``python -m feeder serve TABLE ...``
(and ``icefeed feeder serve``, both in :mod:`feeder.cli`) run one in the
foreground until SIGTERM/SIGINT — the entry point of the feeder's SparkApplication.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from feeder.coordinator.config import FeederConfig
from feeder.protocol.config import TLSConfig, load_token, warn_if_insecure
from jobs.errors import FeederError, IcefeedError, SpecError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyspark.sql import SparkSession

    from feeder.coordinator.journal import Journal, Recorded
    from feeder.coordinator.launcher import NodeLauncher
    from feeder.coordinator.metrics import FeederMetrics
    from feeder.coordinator.served import ServedSnapshot
    from feeder.coordinator.service import Coordinator
    from feeder.coordinator.snapshots import LiveSnapshots

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

    Args:
        config: the session's settings (``table``, ``snapshot_id``, ``columns``,
            ``row_filter`` and ``slice_bytes`` matter here).
        catalog: a pyiceberg ``Catalog``, a catalog name, or None (configured or embedded).

    Returns:
        The pinned snapshot with its schema and slice plans.

    Raises:
        SpecError: an unknown table or column, an unparsable filter (or one
            naming an unknown column), or a snapshot that does not exist.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.parser import parse
    from pyiceberg.expressions.visitors import bind

    from feeder.coordinator.planning import plan_slices
    from feeder.coordinator.served import ServedSnapshot
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
    """A running feeder session: coordinator in this process, data nodes as Spark jobs.

    Returned by :func:`serve`; a context manager that stops the feeder on exit.

    Attributes:
        config: the session's settings.
        spark: the SparkSession the data nodes run on.
        catalog: the catalog the table is loaded from (``refresh`` reloads it there).
        coordinator: the coordinator's Flight server.
        launcher: runs and replaces the data nodes' Spark jobs.
        metrics: the Prometheus metrics, if ``config.metrics_port`` is set.
        journal: the restart journal (None: the session keeps none).
    """

    config: FeederConfig
    spark: SparkSession
    catalog: Catalog | str | None
    coordinator: Coordinator
    launcher: NodeLauncher
    metrics: FeederMetrics | None
    journal: Journal | None = None
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _follower: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.coordinator.refresher = self.refresh_report

    @property
    def endpoint(self) -> str:
        """``grpc://host:port`` (or ``grpc+tls://``) of the coordinator."""
        return self.coordinator.endpoint

    @property
    def snapshot_id(self) -> int | None:
        """The pinned snapshot (None for a table without snapshots)."""
        return self.coordinator.served.snapshot_id

    def status(self) -> dict[str, Any]:
        """Return the JSON-able status document (PROTOCOL.md, *Status document*)."""
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
        """Block until every slice is cached on some data node.

        Args:
            timeout: seconds to wait at most.

        Returns:
            This feeder, so ``serve(...).wait_ready()`` chains.

        Raises:
            FeederError: not ready after ``timeout`` seconds (with the node failures).
        """
        if not self.coordinator.wait_ready(timeout):
            status = self.status()
            raise FeederError(
                f"feeder not ready after {timeout:.0f}s: {status['slices_cached']} of "
                f"{status['slices']} slices cached, {status['nodes_alive']} nodes alive; "
                f"node failures: {self.launcher.failures[-3:]}"
            )
        return self

    def refresh(self) -> int | None:
        """Serve the table's current snapshot to each job's next epoch; return its id.

        Incremental (:meth:`refresh_report`): the nodes cache only the slices of the
        data files the new snapshot added; jobs mid-epoch finish on their snapshot.

        Returns:
            The newest snapshot id served from now on (None for a table without snapshots).

        Raises:
            SpecError: the table, a column or the filter no longer resolves, or the
                schema changed.
        """
        report = self.refresh_report()
        snapshot_id: int | None = report["snapshot_id"]
        return snapshot_id

    def refresh_report(self) -> dict[str, Any]:
        """Add the table's current snapshot if it is new; return what the refresh did.

        What the ``refresh`` Flight action and ``icefeed feeder refresh`` answer:
        ``changed`` (false: the snapshot is already served) and, after a change, the
        refresh's record (PROTOCOL.md, *Status document*, ``refreshes``): its
        ``from_snapshot_id``, ``snapshot_id``, ``slices``, ``kept_slices``,
        ``added_slices`` (to cache), ``slices_cached`` and ``storage_bytes_read``.

        Raises:
            SpecError: the table, a column or the filter no longer resolves, or the
                schema changed.
        """
        from feeder.protocol.tickets import snapshot_key

        with self._refresh_lock:
            served = resolve(replace(self.config, snapshot_id=None), self.catalog)
            if snapshot_key(served.snapshot_id) in self.coordinator.snapshots:
                return {"changed": False, "snapshot_id": served.snapshot_id}
            record = self.coordinator.add_snapshot(served)
        log.info("feeder refreshing to snapshot %s", served.snapshot_id)
        return {"changed": True, **record}

    def follow(self, seconds: float) -> None:
        """Poll the catalog every ``seconds`` and refresh to each new snapshot, until stop.

        A failed poll (catalog unreachable, a schema change) is logged and retried at
        the next one; serving goes on.

        Raises:
            SpecError: ``seconds`` is not positive, or the feeder already follows.
        """
        if seconds <= 0:
            raise SpecError(f"follow: {seconds!r} must be a positive number of seconds")
        if self._follower is not None:
            raise SpecError("follow: this feeder already follows its table")
        stop = self._stopping

        def poll() -> None:
            while not stop.wait(seconds):
                try:
                    self.refresh_report()
                except (IcefeedError, OSError, ValueError) as exc:
                    log.warning(
                        "feeder: refresh of %s failed (%s); retrying", self.config.table, exc
                    )

        self._follower = threading.Thread(target=poll, name="icefeed-follow", daemon=True)
        self._follower.start()
        log.info("feeder follows %s: the catalog is polled every %gs", self.config.table, seconds)

    def _stop_session(self) -> None:
        self.coordinator.request_stop()
        self.launcher.stop(timeout=max(10.0, 5 * self.config.heartbeat_seconds))
        self.coordinator.close()

    def stop(self) -> None:
        """Stop the nodes (their caches are deleted), the coordinator and the metrics server.

        A clean stop ends the session: its journal is deleted (a crash keeps it).
        """
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(timeout=60)
        self._stop_session()
        if self.journal is not None:
            self.journal.clear()
        if self.metrics is not None:
            self.metrics.close()
        log.info("feeder at %s stopped", self.endpoint)

    def __enter__(self) -> Feeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_session(
    snapshots: LiveSnapshots,
    identity: dict[str, Any],
    config: FeederConfig,
    spark: SparkSession,
    *,
    port: int,
    metrics: FeederMetrics | None,
    journal: Journal | None = None,
) -> tuple[Coordinator, NodeLauncher]:
    from feeder.coordinator.launcher import NodeLauncher, NodeTaskSpec
    from feeder.coordinator.service import Coordinator
    from feeder.protocol.tickets import TicketSigner, new_key

    sc = spark.sparkContext
    nodes = config.nodes or max(1, int(sc.defaultParallelism))
    key, restored = new_key(), None
    if journal is not None:
        resumed = journal.begin(identity)
        key, restored = resumed.key, resumed.books
    served = snapshots.get(snapshots.newest)
    coordinator = Coordinator(
        served,
        snapshots=snapshots,
        signer=TicketSigner(key),
        slots=nodes,
        host=config.host,
        port=port,
        token=config.token,
        tls=config.tls,
        lease_seconds=config.lease_seconds,
        heartbeat_seconds=config.heartbeat_seconds,
        metrics=metrics,
        limits=config.limits,
        row_copy=config.row_copy,
        journal=journal,
        restored=restored,
        locality=config.locality,
    )
    warn_if_insecure("the coordinator", config.host, config.tls)
    spec = NodeTaskSpec(
        coordinator_endpoint=_reachable(coordinator.endpoint, config.tls),
        ticket_key=key,
        settings=config.node_settings(),
    )
    launcher = NodeLauncher(sc, spec, nodes=nodes, on_node_lost=coordinator.node_lost)
    try:
        launcher.start()
    except Exception:
        coordinator.close()
        raise
    log.info(
        "feeder serving %s snapshot %s at %s: %d slices, %d data nodes (%d live snapshot(s))",
        served.table,
        served.snapshot_id,
        coordinator.endpoint,
        len(served.plans),
        nodes,
        len(snapshots.live()),
    )
    return coordinator, launcher


def _reachable(endpoint: str, tls: TLSConfig | None) -> str:
    """The coordinator address nodes dial: a wildcard bind is reached via this host's name."""
    import socket

    from feeder.protocol.auth import location_uri

    scheme_host, _, port = endpoint.rpartition(":")
    host = scheme_host.split("://", 1)[1].strip("[]")
    if host in ("0.0.0.0", "::"):
        # with TLS, a name the certificate can carry; without, the address
        name = socket.getfqdn() if tls is not None else socket.gethostbyname(socket.gethostname())
        return location_uri(name, int(port), tls)
    return endpoint


def serve(
    table_or_config: str | FeederConfig,
    *,
    spark: SparkSession | None = None,
    catalog: Catalog | str | None = None,
    **settings: Any,
) -> Feeder:
    """Start a feeder and return it (its data nodes cache in the background).

    ``serve("ns.t", columns=["a"], nodes=2)`` and ``serve(FeederConfig(table="ns.t",
    ...))`` are the same; keywords given with a config replace its fields. A
    ``token`` of None reads ``ICEFEED_TOKEN`` / ``ICEFEED_TOKEN_FILE`` (no token:
    an open feeder). Everything is validated before any node starts.

    Args:
        table_or_config: the table identifier (``"ns.name"``) or a whole FeederConfig.
        spark: the SparkSession the data nodes run on (None: the active one or a new one).
        catalog: a pyiceberg ``Catalog`` or a catalog name (None: ``config.catalog``,
            else the configured or embedded one).
        **settings: any FeederConfig field but ``table`` and ``catalog``
            (``columns``, ``row_filter``, ``nodes``, ``batch_rows``, ...).

    Returns:
        The running Feeder (a context manager: leaving it stops the feeder).

    Raises:
        SpecError: an unknown keyword, a bad setting, an unknown table or column,
            an unparsable filter or a missing snapshot.
    """
    config = _config(table_or_config, catalog, settings)
    journal = _journal(config)
    live, identity = _resolve_session(
        config, catalog if catalog is not None else config.catalog, journal
    )
    if spark is None:
        from jobs.spark import get_spark

        spark = get_spark("icefeed-feeder")
    metrics = None
    if config.metrics_port is not None:
        from feeder.coordinator.metrics import FeederMetrics

        metrics = FeederMetrics(
            port=config.metrics_port, host=config.host, metric_jobs=config.limits.metric_jobs
        )
    coordinator, launcher = _start_session(
        live, identity, config, spark, port=config.port, metrics=metrics, journal=journal
    )
    feeder = Feeder(
        config=config,
        spark=spark,
        catalog=catalog if catalog is not None else config.catalog,
        coordinator=coordinator,
        launcher=launcher,
        metrics=metrics,
        journal=journal,
    )
    if config.follow_seconds is not None:
        feeder.follow(config.follow_seconds)
    return feeder


def _journal(config: FeederConfig) -> Journal | None:
    """The session's journal (``journal_dir``, else under ``cache_dir``), or None."""
    from feeder.coordinator.journal import Journal, default_journal_dir

    path = default_journal_dir(config.journal_dir, config.cache_dir)
    return Journal(path) if path is not None else None


def _resolve_session(
    config: FeederConfig, catalog: Catalog | str | None, journal: Journal | None
) -> tuple[LiveSnapshots, dict[str, Any]]:
    """The snapshots to serve and the session identity to hand :meth:`Journal.begin`.

    When the journal's session ran with the same arguments, every snapshot it served
    is planned again from the catalog and checked against its recorded plan digest,
    and gets the slice ids it had: a restarted driver serves what it served before
    (also after refreshes, and even if the table moved on), and the journal's epochs,
    bindings and tickets keep meaning the same rows. A recorded snapshot the table no
    longer has, or that plans to other slices, starts a fresh session at the current
    snapshot (logged).
    """
    from feeder.coordinator.journal import session_identity
    from feeder.coordinator.snapshots import LiveSnapshots

    recorded = None
    if journal is not None:
        recorded = journal.recorded(
            table=config.table,
            columns=config.columns,
            row_filter=config.row_filter,
            slice_bytes=config.slice_bytes,
            snapshot_id=config.snapshot_id,
        )
    if recorded is not None:
        try:
            return _replan(config, catalog, recorded), recorded.identity
        except (SpecError, ValueError) as exc:
            log.warning(
                "journal %s: its snapshots cannot be served again (%s); starting fresh",
                journal,
                exc,
            )
    served = resolve(config, catalog)
    return LiveSnapshots(served), session_identity(served, slice_bytes=config.slice_bytes)


def _replan(
    config: FeederConfig, catalog: Catalog | str | None, recorded: Recorded
) -> LiveSnapshots:
    """Plan every snapshot ``recorded`` names again; rebuild the session's slice ids.

    Raises:
        SpecError: a snapshot no longer resolves, or plans to other slices than recorded.
        ValueError: the recorded slice ids do not fit the plans.
    """
    from feeder.coordinator.snapshots import LiveSnapshots, plan_digest

    planned: list[tuple[ServedSnapshot, tuple[int, ...] | None]] = []
    for rec in recorded.live:
        served = resolve(replace(config, snapshot_id=rec.snapshot_id), catalog)
        if served.snapshot_id != rec.snapshot_id:
            raise SpecError(f"snapshot {rec.snapshot_id} is not the table's any more")
        if plan_digest(served.plans) != rec.plan_digest:
            raise SpecError(
                f"snapshot {rec.snapshot_id} plans to other slices than the journal recorded"
            )
        planned.append((served, rec.slices))
    live = LiveSnapshots.restored(planned, recorded.slice_count)
    if len(planned) > 1:
        log.info(
            "journal: serving snapshots %s again over %d slice ids",
            [rec.snapshot_id for rec in recorded.live],
            live.slice_count,
        )
    return live


def _config(
    table_or_config: str | FeederConfig, catalog: Catalog | str | None, settings: dict[str, Any]
) -> FeederConfig:
    """The session's FeederConfig: ``serve``'s arguments validated, the token resolved."""
    valid = [name for name in FeederConfig.field_names() if name not in ("table", "catalog")]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise SpecError(f"serve: unknown setting(s) {unknown}; valid: {', '.join(valid)}")
    if isinstance(catalog, str):
        settings = {**settings, "catalog": catalog}
    if isinstance(table_or_config, FeederConfig):
        config = replace(table_or_config, **settings) if settings else table_or_config
    else:
        config = FeederConfig(table=table_or_config, **settings)
    if config.token is None:
        config = replace(config, token=load_token(None))
    return config
