"""FeederClient against a hung data node: real node processes, one SIGSTOPped mid-epoch.

The coordinator runs in the test process; the two data nodes are processes of
their own (``tests.feeder.node_process``), so one can be frozen with SIGSTOP:
it keeps its connections open but sends nothing, which no gRPC read notices.
Rows are wide (4 KiB) and slices large (~8 MB), so a range is far bigger than
what gRPC and the client buffer: the stall lands inside a range and the client
must resume at the row offset it delivered.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from feeder.client.client import FeederClient
from feeder.coordinator.config import FeederConfig
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.protocol.tickets import TicketSigner, new_key
from jobs.errors import SpecError
from tests.feeder.local_feeder import ids_of
from tests.feeder.node_process import start_node_process

ROWS = 8_000
PAYLOAD = 4096
FAILED = re.compile(
    r"data node (\S+) failed after (\d+) rows of a (?:range|bundle of \d+ ranges) \((.*)\); "
    r"failing over.*"
)


def _wide_table(catalog):
    table = catalog.create_table(
        "test.wide",
        schema=pa.schema([("id", pa.int64()), ("payload", pa.binary())]),
        properties={"write.parquet.row-group-limit": "2000"},
    )
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, size=(ROWS, PAYLOAD), dtype=np.uint8)
    table.append(
        pa.table(
            {
                "id": pa.array(np.arange(ROWS, dtype=np.int64)),
                "payload": pa.array([row.tobytes() for row in payload], pa.binary()),
            }
        )
    )
    return table


def _failovers(caplog) -> list[tuple[str, int, str]]:
    found = []
    for record in caplog.records:
        match = FAILED.fullmatch(record.getMessage())
        if record.name == "feeder.client.failover" and match:
            found.append((match[1], int(match[2]), match[3]))
    return found


def test_stall_seconds_must_be_positive():
    with pytest.raises(SpecError, match="stall_seconds"):
        FeederClient("grpc://127.0.0.1:1", stall_seconds=0)


def test_a_hung_node_is_failed_over_after_stall_seconds_every_row_once(catalog, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="feeder.client.failover")
    _wide_table(catalog)
    served = resolve(FeederConfig(table="test.wide", slice_bytes=8_000_000), catalog)
    assert len(served.plans) >= 4
    key = new_key()
    # heartbeat_seconds=6: the frozen node is declared dead only after 30 s, so the
    # clients below meet it as a listed, live-looking location
    coordinator = Coordinator(served, signer=TicketSigner(key), slots=2, heartbeat_seconds=6.0)
    procs = [
        start_node_process(f"p{i}", coordinator.endpoint, key, tmp_path / "cache") for i in range(2)
    ]
    victim: subprocess.Popen | None = None
    try:
        assert coordinator.wait_ready(120), coordinator.status()
        # a slow consumer is not a stalled node: time between reads (a long training
        # step, here 2.5x stall_seconds) never counts towards stall_seconds
        slow = FeederClient(coordinator.endpoint, job="slow", stall_seconds=1.0)
        kept = []
        for i, batch in enumerate(slow.stream(0, seed=5, shuffle=False)):
            if i in (0, 40):
                time.sleep(2.5)
            kept.append(batch)
        counts = Counter(ids_of(kept))
        assert len(counts) == ROWS and set(counts.values()) == {1}
        assert _failovers(caplog) == []

        client = FeederClient(coordinator.endpoint, job="stall", stall_seconds=1.0)
        # slice order: a range is streamed batch by batch (a MIX window is read whole first)
        first = client.plan(0, seed=3, shuffle="slice").endpoints[0].locations[0].uri.decode()
        node = next(n for n in coordinator.status()["nodes"] if n["location"] == first)
        victim = next(p for p in procs if p.pid == node["pid"])

        # mid-range: the first batch came from the victim, then it freezes
        stream = client.stream(0, seed=3, shuffle="slice")
        got = ids_of([next(stream)])
        os.kill(victim.pid, signal.SIGSTOP)
        got += ids_of(stream)
        counts = Counter(got)
        assert len(counts) == ROWS and set(counts.values()) == {1}
        stalls = [f for f in _failovers(caplog) if f[0] == first]
        assert len(stalls) == 1 and "sent nothing for 1s" in stalls[0][2], _failovers(caplog)
        assert 0 < stalls[0][1] < ROWS // len(served.plans)  # inside the first range

        # before a stream starts: a fresh client meets the frozen node at do_get
        caplog.clear()
        fresh = FeederClient(coordinator.endpoint, job="stall-2", stall_seconds=1.0)
        counts = Counter(ids_of(fresh.stream(0, seed=4, shuffle=False)))
        assert len(counts) == ROWS and set(counts.values()) == {1}
        stalls = [f for f in _failovers(caplog) if f[0] == first]
        assert len(stalls) == 1 and stalls[0][1] == 0, _failovers(caplog)
        assert "sent nothing" in stalls[0][2]
    finally:
        coordinator.request_stop()
        if victim is not None:
            os.kill(victim.pid, signal.SIGCONT)
        for proc in procs:
            try:
                proc.wait(timeout=30)  # told to stop at its next heartbeat
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        coordinator.close()
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]


@contextmanager
def _two_node_processes(
    catalog, tmp_path, slice_bytes: int
) -> Iterator[tuple[Coordinator, list[subprocess.Popen], Any]]:
    """A coordinator over ``test.wide`` cut into ``slice_bytes`` slices and two data-node
    processes, ready; stopped (and waited for) on the way out."""
    served = resolve(FeederConfig(table="test.wide", slice_bytes=slice_bytes), catalog)
    key = new_key()
    coordinator = Coordinator(served, signer=TicketSigner(key), slots=2, heartbeat_seconds=6.0)
    procs = [
        start_node_process(f"m{i}", coordinator.endpoint, key, tmp_path / "cache") for i in range(2)
    ]
    try:
        assert coordinator.wait_ready(120), coordinator.status()
        yield coordinator, procs, served
    finally:
        coordinator.request_stop()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        coordinator.close()


def test_a_node_killed_mid_epoch_with_the_mix_shuffle_every_row_once(catalog, tmp_path, caplog):
    """MIX: SIGKILL one of two node processes as the epoch starts; the pieces it would
    have served are read from the other node (which materialises their slices), and the
    epoch still delivers every row once, in the same order as without the loss."""
    from feeder.protocol.mix import MixParams

    caplog.set_level(logging.WARNING, logger="feeder.client.client")
    _wide_table(catalog)
    mix = MixParams(block_rows=64, window_rows=2000)
    with _two_node_processes(catalog, tmp_path, 8_000_000) as (coordinator, procs, _):
        client = FeederClient(coordinator.endpoint, job="mix-kill", stall_seconds=10.0)
        expected = ids_of(client.stream(0, seed=3, mix=mix))
        victim = procs[0]
        location = next(
            n["location"] for n in coordinator.status()["nodes"] if n["pid"] == victim.pid
        )
        # killed before the epoch's streams open, while the coordinator still lists it
        # (heartbeats every 6 s), so the plan names it: killed after the first window, it
        # may already have sent every row into the sockets' buffers (nothing fails over)
        stream = client.stream(1, seed=3, mix=mix)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        got = ids_of(stream)
        counts = Counter(got)
        assert len(counts) == ROWS and set(counts.values()) == {1}
        assert any(f[0] == location for f in _failovers(caplog)), _failovers(caplog)
        assert got != expected  # another epoch ...
        assert ids_of(client.stream(0, seed=3, mix=mix)) == expected  # ... and epoch 0 again
    assert procs[1].returncode == 0


def test_a_node_killed_during_a_whole_window_read_the_rest_is_read_as_pieces(
    catalog, tmp_path, caplog
):
    """MIX on a one-slice table: every window lies on the slice's node, which orders whole
    windows itself. SIGKILL it after the first window: the rest of the epoch is read as
    pieces from the other node (which materialises the slice) and ordered by the consumer —
    every row once, in the order an undisturbed read of the same epoch gives."""
    from feeder.protocol.mix import MixParams

    caplog.set_level(logging.INFO, logger="feeder.client")
    _wide_table(catalog)
    mix = MixParams(block_rows=64, window_rows=2000)
    with _two_node_processes(catalog, tmp_path, 64_000_000) as (coordinator, procs, served):
        assert len(served.plans) == 1
        client = FeederClient(coordinator.endpoint, job="window-kill", stall_seconds=10.0)
        expected = ids_of(client.stream(1, seed=3, mix=mix))
        assert sorted(expected) == list(range(ROWS))
        first = client.plan(1, seed=3, mix=mix).endpoints[0].locations[0].uri.decode()
        owner = next(n for n in coordinator.status()["nodes"] if n["location"] == first)
        victim = next(p for p in procs if p.pid == owner["pid"])
        stream = FeederClient(coordinator.endpoint, job="window-kill-2", stall_seconds=10.0).stream(
            1, seed=3, mix=mix
        )
        got = ids_of([next(stream)])  # a batch of the first window, ordered by the owner
        assert 0 < len(got) <= 2000
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        got += ids_of(stream)
        assert got == expected
        stopped = [
            r.getMessage()
            for r in caplog.records
            if r.name == "feeder.client.windows" and "reading the rest as pieces" in r.getMessage()
        ]
        assert stopped and owner["location"] in stopped[0], stopped
