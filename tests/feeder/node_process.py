"""A data node in a process of its own: ``python -m tests.feeder.node_process`` < spec JSON.

A FAKE of the launcher's Spark task only (``run_data_node`` itself is the real
code), so a test can SIGSTOP or SIGKILL a real node process without Spark. The
spec line on stdin (never argv, which ``ps`` shows) holds the ticket key.
"""

from __future__ import annotations

import json
import logging
import sys

from feeder.node.datanode import run_data_node
from feeder.node.settings import NodeSettings


def main() -> None:
    """Run one data node from the spec on stdin until the coordinator says stop."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    spec = json.loads(sys.stdin.readline())
    run_data_node(
        spec["node_id"],
        spec["endpoint"],
        ticket_key=bytes.fromhex(spec["key"]),
        settings=NodeSettings(
            cache_dir=spec["cache_dir"], heartbeat_seconds=0.2, batch_rows=spec["batch_rows"]
        ),
        timeout=10.0,
    )


if __name__ == "__main__":
    main()
