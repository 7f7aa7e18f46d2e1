"""The feeder session's runtime settings: one :class:`FeederConfig`, validated once.

It extends the data nodes' :class:`~feeder.node.settings.NodeSettings` (a node
setting is declared once, there, because a node may not import the coordinator)
with the session's own settings, and hands its nodes :meth:`FeederConfig.node_settings`.
The token is a pydantic ``SecretStr``, so it never shows in a ``repr``, a log
line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from feeder.coordinator.limits import CoordinatorLimits
from feeder.node.settings import NodeSettings
from jobs.errors import SpecError

DEFAULT_SLICE_BYTES = 128 * 1024 * 1024
DEFAULT_LEASE_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class FeederConfig(NodeSettings):
    """Everything one feeder session needs, validated at construction.

    Args:
        table: the Iceberg table identifier, e.g. ``"ns.name"``.
        columns: the projection (None: every column).
        row_filter: a pyiceberg filter applied when caching (None: every row).
        snapshot_id: the snapshot to pin (None: the current one).
        nodes: data nodes (None: one per Spark task slot).
        port: the coordinator's port (0: any free port).
        slice_bytes: slice size target, in Arrow bytes of the projection.
        lease_seconds: dynamic-mode lease time.
        metrics_port: serve Prometheus ``/metrics`` here (None: no metrics).
        catalog: the catalog's name (None: configured or embedded).
        limits: bounds on the coordinator's per-job state (docs/feeder.md, *Limits*).
        journal_dir: where the coordinator journals what a restart must not lose
            (:mod:`feeder.coordinator.journal`; None: ``<cache_dir>/icefeed-journal``,
            or no journal without a ``cache_dir``).
        follow_seconds: poll the catalog this often and refresh to the table's new
            snapshots (None: serve the pinned snapshot until told to ``refresh``).
        locality: build dynamic MIX epochs' windows per host group, so consumers lease
            their own host's windows first (docs/feeder.md, *Locality*; default off).
        host, token, tls, cache_dir, cache_capacity_bytes, heartbeat_seconds, batch_rows,
            row_copy, local_dir, locality_host: the
            data nodes' settings (:class:`~feeder.node.settings.NodeSettings`);
            ``host`` is the coordinator's bind address too.

    Raises:
        SpecError: a bad value, naming the field and what would be valid.
    """

    table: str
    columns: tuple[str, ...] | None = None
    row_filter: str | None = None
    snapshot_id: int | None = None
    nodes: int | None = None
    port: int = 0
    slice_bytes: int = DEFAULT_SLICE_BYTES
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    metrics_port: int | None = None
    catalog: str | None = None
    limits: CoordinatorLimits = field(default_factory=CoordinatorLimits)
    journal_dir: str | None = None
    follow_seconds: float | None = None
    locality: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table.strip():
            raise SpecError("table: must be a non-empty table identifier like 'ns.name'")
        if isinstance(self.columns, str):
            raise SpecError("columns: give a list of column names, not one string")
        if self.columns is not None:
            cols = tuple(self.columns)
            if not cols or not all(isinstance(c, str) and c for c in cols):
                raise SpecError("columns: must be a non-empty list of column names, or None")
            if len(set(cols)) != len(cols):
                raise SpecError(f"columns: duplicate names in {list(cols)}")
            object.__setattr__(self, "columns", cols)
        if self.row_filter is not None and not isinstance(self.row_filter, str):
            raise SpecError(f"row_filter: {self.row_filter!r} must be a filter string or None")
        if self.snapshot_id is not None and (
            isinstance(self.snapshot_id, bool) or not isinstance(self.snapshot_id, int)
        ):
            raise SpecError(f"snapshot_id: {self.snapshot_id!r} is not an integer")
        if self.nodes is not None and (
            isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1
        ):
            raise SpecError(f"nodes: {self.nodes!r} must be an integer >= 1, or None")
        _check_port("port", self.port, allow_none=False)
        _check_port("metrics_port", self.metrics_port, allow_none=True)
        if isinstance(self.slice_bytes, bool) or not isinstance(self.slice_bytes, int):
            raise SpecError(f"slice_bytes: {self.slice_bytes!r} is not an integer")
        if self.slice_bytes < 1:
            raise SpecError(f"slice_bytes: {self.slice_bytes} must be >= 1")
        value = self.lease_seconds
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise SpecError(f"lease_seconds: {value!r} must be a positive number of seconds")
        follow = self.follow_seconds
        if follow is not None and (
            isinstance(follow, bool) or not isinstance(follow, int | float) or follow <= 0
        ):
            raise SpecError(
                f"follow_seconds: {follow!r} must be a positive number of seconds, or None"
            )
        if self.catalog is not None and not isinstance(self.catalog, str):
            raise SpecError(f"catalog: {self.catalog!r} must be a catalog name or None")
        if self.journal_dir is not None:
            if not isinstance(self.journal_dir, str | os.PathLike) or not str(self.journal_dir):
                raise SpecError(f"journal_dir: {self.journal_dir!r} must be a folder path or None")
            object.__setattr__(self, "journal_dir", str(self.journal_dir))
        if not isinstance(self.locality, bool):
            raise SpecError(f"locality: {self.locality!r} must be true or false")
        if not isinstance(self.limits, CoordinatorLimits):
            raise SpecError("limits: must be a CoordinatorLimits")
        super().__post_init__()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of every setting, in declaration order."""
        return tuple(f.name for f in fields(cls))

    def node_settings(self) -> NodeSettings:
        """Return the settings this session's data nodes run with (a plain NodeSettings)."""
        return NodeSettings(**{f.name: getattr(self, f.name) for f in fields(NodeSettings)})


def _check_port(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SpecError(f"{name}: {value!r} must be an integer port in 0..65535")
