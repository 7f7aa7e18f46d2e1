"""A data node over a few hand-written cached slices, serving Flight and a local socket.

Real parts only: a :class:`~feeder.node.datanode.DataNode` on 127.0.0.1 and its
:class:`~feeder.node.local_server.LocalReadServer` on a Unix socket under a short
temporary directory (socket paths are limited to 107 bytes). No table storage:
the slices are written straight into the cache, as a node that cached them would.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from feeder.node.cache import SliceCache
from feeder.node.datanode import DataNode
from feeder.node.local_server import LocalReadServer
from feeder.protocol.auth import location_uri
from feeder.protocol.local_read import socket_name
from feeder.protocol.tickets import TicketClaims, TicketSigner, new_key

SNAPSHOT = 1
TOKEN = "local-token"
SLICE_ROWS = (1000, 700, 1300)


def slice_table(slice_id: int, rows: int) -> pa.Table:
    """A slice mixing fixed-width columns and a string column with nulls."""
    first = sum(SLICE_ROWS[:slice_id])
    ids = np.arange(first, first + rows, dtype=np.int64)
    names = [None if i % 7 == 0 else f"row-{i}" for i in ids]
    return pa.table({"id": ids, "x": ids.astype(np.float64) / 2, "name": pa.array(names)})


@dataclass
class CachedNode:
    """The node, its Flight location, its local socket and the session's signer."""

    node: DataNode
    local: LocalReadServer
    signer: TicketSigner

    @property
    def location(self) -> str:
        return location_uri("127.0.0.1", self.node.port, None)

    def ticket(self, slice_id: int, start: int, stop: int, **fields: object) -> str:
        """A signed ticket for rows ``[start, stop)`` of ``slice_id`` (job ``job-a``)."""
        claims = {
            "job": "job-a",
            "snapshot_id": SNAPSHOT,
            "slice_id": slice_id,
            "start": start,
            "stop": stop,
            "epoch": 1,
            "seed": 5,
            "shuffle": False,
            **fields,
        }
        return self.signer.sign(TicketClaims(**claims)).decode()  # type: ignore[arg-type]


@contextmanager
def cached_node(*, batch_rows: int = 256) -> Iterator[CachedNode]:
    """Start a node caching ``SLICE_ROWS`` slices, serving Flight and local reads."""
    home = Path(tempfile.mkdtemp(prefix="icefeed-lr-", dir="/tmp"))
    cache = SliceCache(home / "cache")
    for slice_id, rows in enumerate(SLICE_ROWS):
        cache.write(slice_id, slice_table(slice_id, rows))
    signer = TicketSigner(new_key())
    node = DataNode(signer=signer, cache=cache, token=TOKEN, batch_rows=batch_rows)
    node.configure(snapshot_id=SNAPSHOT, source=None, plans={})
    local = LocalReadServer(
        home / socket_name("n0", 1), grant=node.grant_local, token=TOKEN, batch_rows=batch_rows
    )
    try:
        yield CachedNode(node, local, signer)
    finally:
        local.close()
        node.shutdown()
        cache.close()
        shutil.rmtree(home, ignore_errors=True)
