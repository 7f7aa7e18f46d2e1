"""What every data node of a feeder session runs with: one :class:`NodeSettings`.

The coordinator's :class:`~feeder.coordinator.config.FeederConfig` extends it
(so a node setting is declared and validated once, here) and hands its nodes
``config.node_settings()``, pickled into the Spark task closure. Light on
purpose (no pyarrow): the CLI imports it to build its options.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from feeder.protocol.config import DEFAULT_HEARTBEAT_SECONDS, TLSConfig, check_bind, load_token
from feeder.protocol.hosts import check_host
from jobs.errors import SpecError

DEFAULT_BATCH_ROWS = 128 * 1024
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """A data node's runtime settings, validated at construction.

    ``host`` is the bind address; ``advertise_host`` the name consumers dial
    (None: ``host``, or for a wildcard bind this machine's fully qualified name —
    on Kubernetes the pod's name under the headless Service, a name a
    certificate can carry — or its address without TLS). ``insecure=True`` is
    the operator's consent to bind a non-loopback address without TLS (refused
    otherwise, warned about when allowed). ``cache_dir=None`` uses the executor's local dirs
    (``SPARK_LOCAL_DIRS``); ``batch_rows`` caps the rows per Arrow batch a node
    sends; ``row_copy=False`` caches no row-major copy of fixed-width columns
    (about half the disk for such tables, slower shuffled reads).
    ``cache_capacity_bytes`` caps what the node offers to cache (it reports the
    smaller of this and the free disk under its cache folder at ``register``, and
    the coordinator places no more estimated bytes on it); set it when free disk
    overstates the room, e.g. an emptyDir with a ``sizeLimit`` on Kubernetes, or to
    keep space for other tenants. None: the free disk. ``node_metrics_port``: each
    data node serves its own Prometheus ``/metrics`` on this port of ``host`` (None:
    none; needs ``icefeed[metrics]``). ``local_dir``: each data node also listens on a
    Unix socket in this directory and hands its cache files to consumers that can open
    the socket — same host, or a node-local volume both mount — for short-circuit local
    reads (docs/feeder.md, *Local reads*; None, the default: off). The token is a
    ``SecretStr`` and never shows in a ``repr``. ``locality_host``: the host the node
    reports to the coordinator for locality (None: ``$ICEFEED_HOST``, else the hostname;
    :mod:`feeder.protocol.hosts`).

    Raises:
        SpecError: a bad value, naming the field and what would be valid.
    """

    host: str = "127.0.0.1"
    advertise_host: str | None = None
    insecure: bool = False
    token: SecretStr | None = field(default=None, repr=False)
    tls: TLSConfig | None = None
    cache_dir: Path | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    batch_rows: int = DEFAULT_BATCH_ROWS
    row_copy: bool = True
    cache_capacity_bytes: int | None = None
    node_metrics_port: int | None = None
    local_dir: Path | None = None
    locality_host: str | None = None

    def __post_init__(self) -> None:
        if self.locality_host is not None:
            check_host(self.locality_host, "locality_host")
        if not isinstance(self.host, str):
            raise SpecError(f"host: {self.host!r} must be a host name or address")
        hb = self.heartbeat_seconds
        if isinstance(hb, bool) or not isinstance(hb, int | float) or hb <= 0:
            raise SpecError(f"heartbeat_seconds: {hb!r} must be a positive number of seconds")
        if isinstance(self.batch_rows, bool) or not isinstance(self.batch_rows, int):
            raise SpecError(f"batch_rows: {self.batch_rows!r} must be an integer >= 1")
        if self.batch_rows < 1:
            raise SpecError(f"batch_rows: {self.batch_rows!r} must be an integer >= 1")
        if not isinstance(self.row_copy, bool):
            raise SpecError(f"row_copy: {self.row_copy!r} must be true or false")
        cap = self.cache_capacity_bytes
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise SpecError(f"cache_capacity_bytes: {cap!r} must be an integer >= 0 or None")
        port = self.node_metrics_port
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
        ):
            raise SpecError(f"node_metrics_port: {port!r} must be an integer port in 0..65535")
        if self.tls is not None and not isinstance(self.tls, TLSConfig):
            raise SpecError("tls: must be a TLSConfig or None")
        if not isinstance(self.insecure, bool):
            raise SpecError(f"insecure: {self.insecure!r} must be true or false")
        if self.advertise_host is not None and (
            not isinstance(self.advertise_host, str) or not self.advertise_host.strip()
        ):
            raise SpecError(f"advertise_host: {self.advertise_host!r} must be a host name")
        check_bind(self.host or "0.0.0.0", self.tls, insecure=self.insecure)
        if self.token is not None and not isinstance(self.token, SecretStr):
            object.__setattr__(self, "token", load_token(self.token))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.local_dir is not None:
            if not isinstance(self.local_dir, str | Path) or not str(self.local_dir).strip():
                raise SpecError(f"local_dir: {self.local_dir!r} must be a directory path or None")
            object.__setattr__(self, "local_dir", Path(self.local_dir))

    def advertised_host(self) -> str:
        """Return the host name consumers dial to reach a server bound to ``host``.

        Returns:
            ``advertise_host`` if set; else ``host`` unless it is a wildcard; else
            ``socket.getfqdn()`` with TLS (a name the certificate can carry) or
            this host's address without TLS.
        """
        if self.advertise_host:
            return self.advertise_host
        if self.host not in WILDCARD_HOSTS:
            return self.host
        if self.tls is not None:
            return socket.getfqdn()
        return socket.gethostbyname(socket.gethostname())
