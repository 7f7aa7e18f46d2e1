"""Bench helper process: serve one cache dir two ways, in a process of its own.

``python -m tests.bench.flight_servers CACHE_DIR KEY_HEX`` starts

- a *raw* Flight server: the minimal ceiling — ``do_get`` returns a
  ``RecordBatchStream`` of the memory-mapped IPC file, re-cut into batches;
- a ``feeder.node.datanode.DataNode`` over the same files (tickets signed with KEY),
  with its local read socket (``feeder.node.local_server``) in a short folder under /tmp;

prints one JSON line ``{"raw": port, "node": port, "local": socket path, "pid": pid}``
and serves until stdin closes. Its own process, so the bench can read the node's private memory
(``RssAnon``) and client and server do not share a GIL.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

from feeder.node.cache import DEFAULT_BATCH_ROWS, SliceCache
from feeder.node.datanode import DataNode
from feeder.node.local_server import LocalReadServer
from feeder.protocol.local_read import socket_name
from feeder.protocol.tickets import TicketSigner


class RawServer(flight.FlightServerBase):
    """Streams ``slice-<id>.arrow`` memory-mapped; the ticket is the slice id in ASCII."""

    def __init__(self, cache: SliceCache) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.cache = cache

    def do_get(self, context, ticket):
        table = pa.ipc.open_file(pa.memory_map(str(self.cache.path(int(ticket.ticket))))).read_all()
        batches = table.to_batches(max_chunksize=DEFAULT_BATCH_ROWS)
        return flight.RecordBatchStream(pa.Table.from_batches(batches, schema=table.schema))


def main(argv: list[str]) -> int:
    cache = SliceCache(argv[0])
    cache.adopt_existing()
    raw = RawServer(cache)
    node = DataNode(signer=TicketSigner(bytes.fromhex(argv[1])), cache=cache)
    node.configure(snapshot_id=1, source=None, plans={})
    # a short folder of its own: a socket path under pytest's temporary folders can pass
    # the kernel's limit on Unix socket paths (108 bytes)
    sockets = Path(tempfile.mkdtemp(prefix="icefeed-bench-", dir="/tmp"))
    local = LocalReadServer(
        sockets / socket_name("bench", os.getpid()),
        grant=node.grant_local,
        token=None,
        batch_rows=DEFAULT_BATCH_ROWS,
    )
    ports = {"raw": raw.port, "node": node.port, "local": str(local.path), "pid": os.getpid()}
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    local.close()
    shutil.rmtree(sockets, ignore_errors=True)
    raw.shutdown()
    node.shutdown()
    cache.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
