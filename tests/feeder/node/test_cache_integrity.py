"""Damaged cache files: checksums on adoption, and no SIGBUS when a mapped file is truncated.

The truncation test runs the data node in a process of its own
(``tests.feeder.node_process``): without the size checks a truncated mapped file
kills it with SIGBUS, which would kill pytest itself in process.
"""

from __future__ import annotations

import subprocess
import sys

from feeder.client.client import FeederClient
from feeder.coordinator.config import FeederConfig
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.node.cache import SliceCache
from feeder.protocol.tickets import TicketSigner, new_key
from tests.feeder.local_feeder import ids_of
from tests.feeder.node_process import start_node_process
from tests.feeder.tables import make_table, sample_arrow

ROWS = 6_000


def test_adoption_verifies_checksums_and_drops_flipped_or_truncated_slices(tmp_path):
    cache = SliceCache(tmp_path / "c")
    for slice_id in range(3):
        cache.write(slice_id, sample_arrow(2000, start=slice_id * 2000))
    cache.close()
    flipped = bytearray(cache.path(1).read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # one bit, in the data: pyarrow alone would serve it
    cache.path(1).write_bytes(bytes(flipped))
    with open(cache.path(2), "r+b") as fh:
        fh.truncate(100)

    again = SliceCache(tmp_path / "c")
    adopted = again.adopt_existing()
    assert [e.slice_id for e in adopted] == [0]
    assert adopted[0].checksum is not None
    assert not again.path(1).exists() and not again.path(2).exists()
    assert not list((tmp_path / "c").glob("slice-0000000[12]*"))  # row copies and sums too
    got = ids_of(again.read(0, permutation=None, start=0, stop=2000))
    assert got == list(range(2000))


def test_a_cached_file_truncated_under_a_running_node_is_cached_again_not_a_sigbus(
    catalog, tmp_path
):
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    served = resolve(FeederConfig(table="test.feed", slice_bytes=40_000), catalog)
    key = new_key()
    coordinator = Coordinator(served, signer=TicketSigner(key), slots=1, heartbeat_seconds=0.5)
    cache_dir = tmp_path / "cache"
    node = start_node_process("trunc", coordinator.endpoint, key, cache_dir, batch_rows=500)
    try:
        assert coordinator.wait_ready(120), coordinator.status()
        client = FeederClient(coordinator.endpoint, job="t", timeout=20)
        assert sorted(ids_of(client.stream(0, shuffle=False))) == list(range(ROWS))
        files = sorted((tmp_path / "cache").glob("icefeed-node-*/slice-*"))
        ipc = [f for f in files if f.suffix == ".arrow"]
        assert len(ipc) == len(served.plans) > 1
        sizes = {path: path.stat().st_size for path in ipc}
        for path in files:
            if path.suffix in (".arrow", ".rows"):
                with open(path, "r+b") as fh:  # truncated under the live, mapped node
                    fh.truncate(path.stat().st_size // 3)
        assert sorted(ids_of(client.stream(1, shuffle=False))) == list(range(ROWS))
        assert sorted(ids_of(client.stream(2, seed=3))) == list(range(ROWS))
        assert node.poll() is None  # alive: no SIGBUS
        assert {path: path.stat().st_size for path in ipc} == sizes  # each cached again
    finally:
        coordinator.request_stop()
        node.wait(30)
        coordinator.close()


def test_a_replacement_node_adopts_a_sigkilled_nodes_verified_slices(catalog, tmp_path):
    import signal
    import threading

    from feeder.node.settings import NodeSettings
    from feeder.node.task import run_data_node

    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    served = resolve(FeederConfig(table="test.feed", slice_bytes=40_000), catalog)
    key = new_key()
    coordinator = Coordinator(served, signer=TicketSigner(key), slots=1, heartbeat_seconds=0.3)
    cache_dir = tmp_path / "cache"
    victim = start_node_process("trunc", coordinator.endpoint, key, cache_dir, batch_rows=500)
    replacement: threading.Thread | None = None
    try:
        assert coordinator.wait_ready(120), coordinator.status()
        (dead_folder,) = cache_dir.glob("icefeed-node-*")
        ipc = sorted(dead_folder.glob("slice-*.arrow"))
        assert len(ipc) == len(served.plans)
        flipped = bytearray(ipc[0].read_bytes())
        flipped[len(flipped) // 2] ^= 0x01  # this one must not be adopted
        ipc[0].write_bytes(bytes(flipped))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert coordinator.wait_for(lambda s: not any(n["alive"] for n in s["nodes"]), timeout=60)
        replacement = threading.Thread(
            target=run_data_node,
            args=("again", coordinator.endpoint),
            kwargs={
                "ticket_key": key,
                "settings": NodeSettings(cache_dir=cache_dir, heartbeat_seconds=0.2),
                "timeout": 10.0,
            },
            daemon=True,
        )
        replacement.start()

        def settled(status: dict) -> bool:
            live = [n for n in status["nodes"] if n["alive"]]
            return len(live) == 1 and live[0]["slices_cached"] == len(served.plans)

        assert coordinator.wait_for(settled, timeout=60), coordinator.status()
        (node,) = [n for n in coordinator.status()["nodes"] if n["alive"]]
        # only the slice with the flipped bit was read from storage again
        assert 0 < node["storage_bytes_read"] < sum(p.estimated_bytes for p in served.plans)
        assert not dead_folder.exists()
        client = FeederClient(coordinator.endpoint, job="after", timeout=20)
        assert sorted(ids_of(client.stream(0, shuffle=False))) == list(range(ROWS))
    finally:
        coordinator.request_stop()
        if replacement is not None:
            replacement.join(30)
        if victim.poll() is None:
            victim.kill()
        coordinator.close()


ADOPT_IN_FRESH_PROCESS = """
import sys
from feeder.node.cache import SliceCache

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

before = rss_anon()
adopted = SliceCache(sys.argv[1]).adopt_existing()
print(len(adopted), rss_anon() - before)
"""


def test_adopting_a_cache_maps_it_instead_of_copying_it_into_private_memory(tmp_path):
    """A node that adopts 160 MB of slices at start keeps its private memory: counting a
    file's rows maps it (reading it through buffers once cost the whole cache in
    RssAnon: the bench's node memory fell from 33x to 8x the bytes it served)."""
    import numpy as np
    import pyarrow as pa

    cache = SliceCache(tmp_path / "cache")
    rng = np.random.default_rng(0)
    for i in range(4):  # 4 x 40 MB
        cache.write(i, pa.table({f"f{c}": rng.random(1_000_000) for c in range(5)}))
    cache.close()
    proc = subprocess.run(
        [sys.executable, "-c", ADOPT_IN_FRESH_PROCESS, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, grown = (int(x) for x in proc.stdout.split())
    assert count == 4
    assert grown < 40_000_000, f"adopting 160 MB grew private memory by {grown:,} bytes"
