"""The feeder session's runtime settings: one :class:`FeederConfig`, validated once.

The token is a pydantic ``SecretStr``, so it never shows in a ``repr``, a log
line or an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from feeder.protocol.config import DEFAULT_HEARTBEAT_SECONDS, TLSConfig, load_token
from jobs.errors import SpecError

DEFAULT_SLICE_BYTES = 128 * 1024 * 1024
DEFAULT_LEASE_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class FeederConfig:
    """Everything one feeder session needs, validated at construction.

    ``columns=None`` serves every column; ``nodes=None`` means one data node per
    Spark task slot; ``port=0`` picks a free port; ``cache_dir=None`` uses the
    executors' local dirs (``SPARK_LOCAL_DIRS``); ``row_copy=False`` caches no
    row-major copies of fixed-width columns (half the disk for such tables, slower
    shuffled reads). Raises SpecError on a bad value.
    """

    table: str
    columns: tuple[str, ...] | None = None
    row_filter: str | None = None
    snapshot_id: int | None = None
    nodes: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token: SecretStr | None = field(default=None, repr=False)
    tls: TLSConfig | None = None
    cache_dir: Path | None = None
    slice_bytes: int = DEFAULT_SLICE_BYTES
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    metrics_port: int | None = None
    catalog: str | None = None
    row_copy: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table.strip():
            raise SpecError("table: must be a non-empty table identifier like 'ns.name'")
        if self.columns is not None:
            cols = tuple(self.columns)
            if not cols or not all(isinstance(c, str) and c for c in cols):
                raise SpecError("columns: must be a non-empty list of column names, or None")
            if len(set(cols)) != len(cols):
                raise SpecError(f"columns: duplicate names in {list(cols)}")
            object.__setattr__(self, "columns", cols)
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
        for name in ("lease_seconds", "heartbeat_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SpecError(f"{name}: {value!r} must be a positive number of seconds")
        if not isinstance(self.row_copy, bool):
            raise SpecError(f"row_copy: {self.row_copy!r} must be true or false")
        if self.token is not None and not isinstance(self.token, SecretStr):
            object.__setattr__(self, "token", load_token(self.token))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))


def _check_port(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SpecError(f"{name}: {value!r} must be an integer port in 0..65535")
