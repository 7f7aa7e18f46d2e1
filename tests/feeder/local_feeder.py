"""A feeder without Spark for fast protocol tests: a real Coordinator and real data nodes.

The data nodes run :func:`feeder.node.task.run_data_node` in *threads* of the
test process — a FAKE for the Spark tasks of the launcher only (everything
else is the real code over real Flight on 127.0.0.1). The Spark path is
tested in ``test_serve.py`` / ``test_launcher.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from feeder.coordinator.config import FeederConfig
from feeder.coordinator.journal import Journal
from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.node.settings import NodeSettings
from feeder.node.task import run_data_node
from feeder.protocol.config import TLSConfig
from feeder.protocol.tickets import TicketSigner, new_key


@dataclass
class LocalFeeder:
    """A running coordinator and its thread-hosted data nodes."""

    coordinator: Coordinator
    key: bytes
    threads: list[threading.Thread]

    @property
    def endpoint(self) -> str:
        return self.coordinator.endpoint


@contextmanager
def local_feeder(
    catalog: Any,
    table: str = "test.feed",
    *,
    cache_dir: Path,
    nodes: int = 2,
    columns: Sequence[str] | None = None,
    row_filter: str | None = None,
    token: str | None = None,
    tls: TLSConfig | None = None,
    slice_bytes: int = 20_000,
    lease_seconds: float = 30.0,
    metrics: FeederMetrics | None = None,
    batch_rows: int = 128 * 1024,
    io_properties: Mapping[str, str] | None = None,
    limits: CoordinatorLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
    advertise_host: str | None = None,
    node_tls: TLSConfig | None = None,
    node_endpoint: Callable[[str], str] | None = None,
    node_capacity: Sequence[int | None] | None = None,
    ready_timeout: float = 60.0,
    node_metrics_port: int | None = None,
    journal: Journal | None = None,
    locality_host: str | None = None,
) -> Iterator[LocalFeeder]:
    """Start a coordinator for ``table`` and ``nodes`` thread data nodes; wait until ready.

    ``io_properties`` are added to the table's FileIO properties the nodes get;
    ``advertise_host`` is the nodes' advertised name; ``node_tls`` the nodes' TLS
    settings (None: ``tls``); ``node_endpoint`` maps the coordinator's endpoint
    to the one nodes dial (e.g. through a recording relay); ``node_capacity[i]`` is
    node ``t{i}``'s ``cache_capacity_bytes`` (None: its free disk); ``locality_host`` the
    host every node reports (None: this machine's). A FeederError from
    ``wait_ready`` (e.g. the table does not fit) propagates after the nodes stopped.
    """
    config = FeederConfig(
        table=table,
        columns=tuple(columns) if columns else None,
        row_filter=row_filter,
        slice_bytes=slice_bytes,
        token=token,
        tls=tls,
    )
    served = resolve(config, catalog)
    if io_properties:
        served = replace(served, io_properties={**served.io_properties, **io_properties})
    key = new_key()
    coordinator = Coordinator(
        served,
        signer=TicketSigner(key),
        slots=nodes,
        token=config.token,
        tls=tls,
        lease_seconds=lease_seconds,
        heartbeat_seconds=0.2,
        metrics=metrics,
        limits=limits,
        clock=clock,
        journal=journal,
    )
    dial = node_endpoint(coordinator.endpoint) if node_endpoint else coordinator.endpoint
    threads = [
        threading.Thread(
            target=run_data_node,
            args=(f"t{i}", dial),
            kwargs={
                "ticket_key": key,
                "settings": NodeSettings(
                    token=config.token,
                    tls=node_tls if node_tls is not None else tls,
                    advertise_host=advertise_host,
                    cache_dir=cache_dir,
                    heartbeat_seconds=0.2,
                    batch_rows=batch_rows,
                    cache_capacity_bytes=node_capacity[i] if node_capacity else None,
                    node_metrics_port=node_metrics_port,
                    locality_host=locality_host,
                ),
                "timeout": 10.0,
            },
            name=f"fake-spark-task-t{i}",
            daemon=True,
        )
        for i in range(nodes)
    ]
    for thread in threads:
        thread.start()
    try:
        assert coordinator.wait_ready(ready_timeout), coordinator.status()
        yield LocalFeeder(coordinator, key, threads)
    finally:
        coordinator.request_stop()
        for thread in threads:
            thread.join(timeout=20)
        coordinator.close()


def ids_of(batches: Iterator[pa.RecordBatch] | list[pa.RecordBatch]) -> list[int]:
    """The ``id`` column of every batch, in order."""
    out: list[int] = []
    for batch in batches:
        out.extend(batch.column("id").to_pylist())
    return out


def small_table_catalog(
    home: Path, name: str, *, files: int = 1, rows_per_file: int = 200, row_group_rows: int = 100
) -> Any:
    """A fresh embedded catalog under ``home`` holding ``test.feed`` (default: 200 rows,
    2 row groups; else ``files`` appends of ``rows_per_file`` rows)."""
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties
    from tests.feeder.tables import make_table

    (home / "warehouse").mkdir()
    cat = SqlCatalog(name, **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=files, rows_per_file=rows_per_file, row_group_rows=row_group_rows)
    return cat


def act(client: Any, name: str, body: dict[str, Any] | bytes, job: str) -> dict[str, Any]:
    """Run coordinator action ``name`` for ``job`` over a raw Flight client; its JSON answer."""
    import json

    import pyarrow.flight as flight

    from feeder.protocol.auth import call_options

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    (result,) = client.do_action(flight.Action(name, raw), call_options(None, job))
    answer: dict[str, Any] = json.loads(result.body.to_pybytes())
    return answer
