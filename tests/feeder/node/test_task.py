"""The Spark-task loop of a data node (`feeder.node.task`): register, cache, heartbeat, stop."""

from __future__ import annotations

import json
import threading

import pyarrow.flight as flight
import pytest

from feeder.coordinator.planning import plan_slices
from feeder.node.cache import SliceCache
from feeder.node.datanode import DataNode
from feeder.node.settings import NodeSettings
from feeder.node.task import run_data_node
from feeder.protocol.auth import (
    call_options,
    caller_node_proof,
    connect,
    location_uri,
    server_middleware,
)
from feeder.protocol.node_auth import KEY_PURPOSE, NodeCallVerifier
from feeder.protocol.tickets import TicketSigner
from jobs.errors import AuthError
from tests.feeder.node.test_datanode import KEY, TOKEN, claims, fetch
from tests.feeder.tables import make_table


class FakeCoordinator(flight.FlightServerBase):
    """A FAKE coordinator (the real one is feeder.coordinator.service): answers only node actions.

    It checks each call's node proof with the real verifier and records refusals.
    """

    def __init__(self, answer: dict):
        super().__init__("grpc://127.0.0.1:0", middleware=server_middleware(None))
        self.answer = answer
        self.calls: list[tuple[str, dict]] = []
        self.refused: list[str] = []
        self._proofs = NodeCallVerifier(TicketSigner(KEY).derived_key(KEY_PURPOSE))
        self.cached = threading.Event()
        self.stop_nodes = threading.Event()

    def do_action(self, context, action):
        raw = action.body.to_pybytes()
        try:
            self._proofs.verify(action.type, raw, caller_node_proof(context))
        except AuthError as exc:
            self.refused.append(str(exc))
        body = json.loads(raw or b"{}")
        self.calls.append((action.type, body))
        if action.type == "register":
            result = self.answer
        elif action.type == "cached":
            result = {}
            if sum(1 for t, _ in self.calls if t == "cached") == len(self.answer["assigned"]):
                self.cached.set()
        elif action.type == "node_heartbeat":
            result = {"stop": self.stop_nodes.is_set()}
        else:
            raise flight.FlightServerError(f"unknown action {action.type}")
        yield flight.Result(json.dumps(result).encode())


def test_run_data_node_registers_caches_serves_and_stops(catalog, tmp_path):
    cache_dir = tmp_path / "local-dir"
    table = make_table(catalog, files=1, rows_per_file=2000, row_group_rows=500)
    snap = table.current_snapshot().snapshot_id
    fake = FakeCoordinator(
        _answer_for(table, snap, [0, 2], row_filter="cat < 5", columns=["id", "cat"])
    )
    thread, result = _node_thread("n0", fake, cache_dir, timeout=10)
    try:
        assert fake.cached.wait(30)
        register = next(body for t, body in fake.calls if t == "register")
        assert register["node_id"] == "n0" and register["pid"] > 0
        cached = sorted(b["slice_id"] for t, b in fake.calls if t == "cached")
        assert cached == [0, 2]
        # serve the not-yet-cached slice 1 on demand (failover path)
        node_client = connect(register["location"])
        ticket = TicketSigner(KEY).sign(claims(snap, 1, 0, 10, job="j"))
        got = node_client.do_get(flight.Ticket(ticket), call_options(None, "j", 10)).read_all()
        assert got.schema.names == ["id", "cat"] and got.num_rows == 10
        node_client.close()
    finally:
        fake.stop_nodes.set()
        thread.join(60)
        fake.shutdown()
    assert not thread.is_alive()
    assert result["stats"]["slices_cached"] == 3
    assert result["stats"]["rows_served"] == 10
    assert fake.refused == []  # every register, cached and heartbeat carried a valid proof
    assert {t for t, _ in fake.calls} == {"register", "cached", "node_heartbeat"}
    assert list(cache_dir.iterdir()) == []  # the node deletes its cache when it stops


def test_node_over_tls_with_token(catalog, tmp_path):
    from tests.feeder.protocol.test_auth import (
        CERTIFICATE_REFUSED,
        make_self_signed,
        unrelated_ca,
    )

    tls = make_self_signed(tmp_path)
    cache = SliceCache(tmp_path / "cache")
    cache.write(0, make_table(catalog, files=1, rows_per_file=50).scan().to_arrow())
    node = DataNode(
        location_uri("127.0.0.1", 0, tls),
        signer=TicketSigner(KEY),
        cache=cache,
        token=TOKEN,
        tls=tls,
    )
    node.configure(snapshot_id=9, source=None, plans={})
    try:
        client = connect(location_uri("127.0.0.1", node.port, tls), tls=tls)
        ticket = TicketSigner(KEY).sign(claims(9, 0, 0, 50))
        assert fetch(client, ticket).num_rows == 50
        with pytest.raises(flight.FlightUnauthenticatedError):
            fetch(client, ticket, token=None)
        client.close()
        # a client that trusts an unrelated CA must refuse the node's certificate
        stranger = connect(location_uri("127.0.0.1", node.port, tls), tls=unrelated_ca(tmp_path))
        with pytest.raises(flight.FlightUnavailableError, match=CERTIFICATE_REFUSED):
            fetch(stranger, ticket)
        stranger.close()
    finally:
        node.shutdown()
        cache.close()


def _answer_for(table, snap, assigned, *, row_filter=None, columns=None):
    """The coordinator's ``register`` answer: ``table``'s slices at ``snap`` (one per row
    group), ``assigned`` to the node."""
    plans = plan_slices(
        table, snapshot_id=snap, row_filter=row_filter, columns=columns, slice_bytes=1
    )
    return {
        "snapshot_id": snap,
        "metadata_location": table.metadata_location,
        "io_properties": {},
        "row_filter": row_filter,
        "columns": columns,
        "plans": [p.to_dict() for p in plans],
        "assigned": assigned,
    }


def _node_thread(node_id, fake, cache_dir, *, timeout):
    """``run_data_node`` against ``fake`` on a started thread; its stats land in the
    returned dict under ``"stats"`` when it returns."""
    result: dict = {}

    def run():
        result["stats"] = run_data_node(
            node_id,
            f"grpc://127.0.0.1:{fake.port}",
            ticket_key=KEY,
            settings=NodeSettings(cache_dir=cache_dir, heartbeat_seconds=0.05),
            timeout=timeout,
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_node_stops_by_itself_when_the_coordinator_dies(catalog, tmp_path):
    table = make_table(catalog, files=1, rows_per_file=600, row_group_rows=300)
    fake = FakeCoordinator(_answer_for(table, table.current_snapshot().snapshot_id, [0]))
    thread, result = _node_thread("lonely", fake, tmp_path / "local", timeout=1.0)
    assert fake.cached.wait(30)
    fake.shutdown()  # the coordinator is gone: no answer to heartbeats any more
    thread.join(60)
    assert not thread.is_alive()
    assert result["stats"]["slices_cached"] == 1
    assert list((tmp_path / "local").iterdir()) == []


def test_registering_with_no_coordinator_is_a_feeder_error(tmp_path):
    from jobs.errors import FeederError

    with pytest.raises(FeederError, match="could not register"):
        run_data_node(
            "n9",
            "grpc://127.0.0.1:9",
            ticket_key=KEY,
            settings=NodeSettings(cache_dir=tmp_path),
            timeout=5.0,
        )
    assert list(tmp_path.iterdir()) == []


def test_data_port_comes_from_the_executor_environment() -> None:
    from feeder.node.task import data_port
    from jobs.errors import SpecError

    assert data_port({}) == 0
    assert data_port({"ICEFEED_DATA_PORT": "8816"}) == 8816
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(SpecError, match="ICEFEED_DATA_PORT"):
            data_port({"ICEFEED_DATA_PORT": bad})


def test_a_node_offers_the_free_disk_or_less_when_the_operator_caps_its_cache(tmp_path):
    import os

    from feeder.node.task import cache_capacity

    stat = os.statvfs(tmp_path)
    free = stat.f_bavail * stat.f_frsize
    assert abs(cache_capacity(tmp_path, None, 0) - free) < 64 * 2**20  # other writers
    assert cache_capacity(tmp_path, 10_000, 0) == 10_000
    assert cache_capacity(tmp_path, 10_000, 4_000) == 6_000  # adopted slices count
    assert cache_capacity(tmp_path, 10_000, 12_000) == 0
