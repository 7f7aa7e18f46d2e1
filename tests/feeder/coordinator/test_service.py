"""The coordinator over real Flight on 127.0.0.1, real data nodes in threads (see local_feeder).

One feeder for the module (a real table of 3 files x 4,000 rows, ~24 slices);
the token/TLS and coordinator-loss tests start their own.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections import Counter

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from feeder.client.client import FeederClient
from feeder.protocol.actions import ACTIONS
from feeder.protocol.auth import call_options
from feeder.protocol.config import TLSConfig
from feeder.protocol.messages import StaticRequest
from feeder.protocol.node_auth import KEY_PURPOSE, NODE_ACTIONS, NodeCallSigner
from feeder.protocol.tickets import TicketSigner, new_key
from feeder.protocol.wire_errors import ErrorCode, error_code
from jobs.errors import AuthError, FeederError, SpecError
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table

ROWS = 12_000
# A bad request reaches FeederClient as a FlightServerError with code invalid_argument
# (never ArrowInvalid: pyarrow sends that with the server's traceback); the client maps
# the code back to SpecError.
BAD_REQUEST = SpecError


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("coord-home")


@pytest.fixture(scope="module")
def module_catalog(home):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (home / "warehouse").mkdir()
    cat = SqlCatalog("coord", **embedded_catalog_properties(home))
    cat.create_namespace("test")
    make_table(cat, files=3, rows_per_file=ROWS // 3, row_group_rows=500)
    return cat


@pytest.fixture(scope="module")
def feed(module_catalog, home):
    with local_feeder(module_catalog, cache_dir=home / "cache", nodes=2) as running:
        yield running


def wait_for_fresh_heartbeats(feed) -> dict:
    """Wait until every live node sent a heartbeat after now; return the status then."""
    before = {n["node_id"]: n["heartbeats"] for n in feed.coordinator.status()["nodes"]}

    def fresh(status):
        return all(
            n["heartbeats"] > before.get(n["node_id"], 0) for n in status["nodes"] if n["alive"]
        )

    assert feed.coordinator.wait_for(fresh, 10)
    return feed.coordinator.status()


def test_feeder_is_ready_with_every_slice_cached_and_counted(feed):
    status = FeederClient(feed.endpoint).status()
    assert status["version"] == 1
    assert status["ready"] and status["rows"] == ROWS
    assert status["slices"] > 4 and status["slices_cached"] == status["slices"]
    assert status["nodes_alive"] == 2
    assert all(isinstance(n["pid"], int) for n in status["nodes"])


@pytest.mark.parametrize("drop_last", [True, False])
def test_static_ranks_get_equal_rows_and_every_row_once(feed, drop_last):
    world = 7  # 12,000 rows: 12,000 % 7 == 2, so drop_last matters
    client = FeederClient(feed.endpoint, job=f"static-{drop_last}")
    parts = [
        ids_of(client.stream(0, rank=r, world_size=world, drop_last=drop_last, seed=5))
        for r in range(world)
    ]
    lengths = {len(p) for p in parts}
    assert len(lengths) == 1
    every = Counter(i for p in parts for i in p)
    if drop_last:
        assert lengths == {ROWS // world}
        assert set(every.values()) == {1} and len(every) == ROWS - ROWS % world
    else:
        assert lengths == {-(-ROWS // world)}
        assert set(every) == set(range(ROWS))
        assert sum(every.values()) - ROWS == world - ROWS % world  # the padding repeats


def test_workers_split_a_rank_in_whole_units_and_skip_resumes(feed):
    client = FeederClient(feed.endpoint, job="workers")
    whole = ids_of(client.stream(1, rank=1, world_size=2, seed=3))
    pieces = [
        ids_of(client.stream(1, rank=1, world_size=2, seed=3, worker=w, num_workers=3, unit=64))
        for w in range(3)
    ]
    assert [i for p in pieces for i in p] == whole
    assert all(len(p) % 64 == 0 for p in pieces[:-1])
    resumed = ids_of(
        client.stream(
            1, rank=1, world_size=2, seed=3, worker=0, num_workers=3, unit=64, skip_rows=100
        )
    )
    assert resumed == pieces[0][100:]


def test_same_seed_and_epoch_repeat_and_epochs_differ(feed):
    client = FeederClient(feed.endpoint, job="order")
    first = ids_of(client.stream(0, seed=11))
    assert first == ids_of(client.stream(0, seed=11))
    assert first != ids_of(client.stream(1, seed=11))
    assert sorted(first) == list(range(ROWS))


def test_no_shuffle_is_table_order(feed):
    ids = ids_of(FeederClient(feed.endpoint, job="plain").stream(0, shuffle=False))
    assert sorted(ids) == list(range(ROWS))
    # each data file was appended with ascending ids: table order is a few ascending runs
    breaks = sum(1 for a, b in itertools.pairwise(ids) if b < a)
    assert breaks < 3


def test_dynamic_concurrent_consumers_get_every_row_once(feed):
    client = FeederClient(feed.endpoint, job="dyn")
    results: dict[int, list[int]] = {}

    def consume(k: int) -> None:
        results[k] = ids_of(client.stream(0, mode="dynamic", seed=4, rank=k))

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    every = Counter(i for ids in results.values() for i in ids)
    assert len(results) == 3
    assert set(every.values()) == {1} and set(every) == set(range(ROWS))
    assert feed.coordinator.status()["jobs"]["dyn"]["consumers"] == 3


def test_many_jobs_read_one_cache_at_once_and_storage_is_read_once(feed):
    before = wait_for_fresh_heartbeats(feed)["storage_bytes_read"]
    assert before > 0
    results: dict[str, Counter] = {}

    def job_a() -> None:
        client = FeederClient(feed.endpoint, job="A")
        results["A"] = Counter(
            i
            for r in range(2)
            for i in ids_of(client.stream(2, rank=r, world_size=2, seed=1, columns=["id", "x"]))
        )

    def job_b() -> None:
        client = FeederClient(feed.endpoint, job="B")
        got: Counter = Counter()
        for r in range(3):
            for w in range(2):
                for batch in client.stream(
                    0,
                    rank=r,
                    world_size=3,
                    seed=9,
                    columns=["id"],
                    worker=w,
                    num_workers=2,
                    unit=100,
                ):
                    assert batch.schema.names == ["id"]
                    got.update(batch.column("id").to_pylist())
        results["B"] = got

    threads = [threading.Thread(target=job_a), threading.Thread(target=job_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(results["A"].values()) == {1} and len(results["A"]) == ROWS
    assert set(results["B"].values()) == {1} and len(results["B"]) == ROWS
    after = wait_for_fresh_heartbeats(feed)["storage_bytes_read"]
    assert after == before  # every epoch since the first caching came from the cache
    jobs = feed.coordinator.status()["jobs"]
    assert jobs["A"]["epochs"] == [2] and jobs["B"]["consumers"] == 6


def test_schema_follows_the_projection(feed):
    client = FeederClient(feed.endpoint)
    assert client.schema(["x", "id"]).names == ["x", "id"]
    assert client.schema().names == ["id", "x", "name", "cat"]


def test_bad_requests_are_clear_errors(feed):
    client = FeederClient(feed.endpoint)
    with pytest.raises(BAD_REQUEST, match="unknown column"):
        list(client.stream(0, columns=["nope"]))
    with pytest.raises(SpecError, match="rank"):
        list(client.stream(0, rank=2, world_size=2))
    with pytest.raises(SpecError, match="mode"):
        list(client.stream(0, mode="sometimes"))
    # the same refusal straight from the server, for a hand-made command
    raw = flight.FlightClient(feed.endpoint)
    command = json.dumps({"rank": 3, "world_size": 2}).encode()
    with pytest.raises(flight.FlightServerError, match="rank") as refused:
        raw.get_flight_info(flight.FlightDescriptor.for_command(command))
    assert error_code(refused.value) is ErrorCode.INVALID_ARGUMENT
    assert "Traceback" not in str(refused.value) and ".py" not in str(refused.value)


def test_dynamic_consumers_of_one_job_must_agree_on_the_seed(feed):
    client = FeederClient(feed.endpoint, job="agree")
    stream = client.stream(0, mode="dynamic", seed=1)
    next(stream)
    with pytest.raises(BAD_REQUEST, match="same"):
        next(client.stream(0, mode="dynamic", seed=2))
    stream.close()


def test_resume_re_signs_the_rest_of_a_ticket_and_refuses_forgeries(feed):
    client = FeederClient(feed.endpoint, job="res")
    info = client.plan(0, seed=2)
    ticket = info.endpoints[0].ticket.ticket.decode()
    full = ids_of(client._nodes.read(ticket, [info.endpoints[0].locations[0].uri.decode()]))
    answer = client._coordinator.action("resume", {"ticket": ticket, "delivered": 10})
    assert ids_of(client._nodes.read(answer["ticket"], answer["locations"])) == full[10:]
    forged = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
    with pytest.raises(AuthError):
        client._coordinator.action("resume", {"ticket": forged, "delivered": 0})
    other_job = FeederClient(feed.endpoint, job="someone-else")
    with pytest.raises(AuthError):
        other_job._coordinator.action("resume", {"ticket": ticket, "delivered": 0})


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.3 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif choice < 0.55 and out:
            del out[rng.randrange(len(out)) :]
        elif choice < 0.8:
            out.insert(rng.randrange(len(out) + 1), rng.randrange(256))
        else:
            out = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(out)


def _fuzz_proof(
    name: str, body: bytes, rng: random.Random, node: NodeCallSigner, foreign: NodeCallSigner
) -> tuple[str | None, bool]:
    """No proof, a forged or mutated one, or a valid fresh one (then True)."""
    choice = rng.randrange(4)
    if choice == 0:
        return None, False
    if choice == 1:
        return foreign.proof(name, body), False
    if choice == 2:
        good = node.proof(name, body)
        mutated = bytes(c for c in _mutate(good.encode(), rng) if 0x21 <= c < 0x7F).decode()
        return (mutated if mutated != good else good[:-1]), False
    return node.proof(name, body), True  # so the handlers still see fuzzed bodies


def _random_json(rng: random.Random) -> object:
    return rng.choice(
        [None, True, -1, 0, 2**70, 3.5, "", "x" * 300, [], ["id"], {}, {"a": 1}, ["nope"], 7]
    )


def test_fuzzed_descriptors_and_actions_get_errors_and_the_server_stays_up(feed):
    rng = random.Random(1234)
    raw = flight.FlightClient(feed.endpoint)
    options = flight.FlightCallOptions(headers=[(b"x-icefeed-job", b"fuzz")], timeout=10)
    valid_command = StaticRequest(job="fuzz", epoch=0, rank=0, world_size=2).to_command()
    valid_bodies = {
        "lease": json.dumps({"job": "fuzz", "epoch": 0, "consumer": "c"}).encode(),
        "heartbeat": json.dumps(
            {"job": "fuzz", "epoch": 0, "consumer": "c", "progress": {"L0": 5}}
        ).encode(),
        "done": json.dumps({"job": "fuzz", "epoch": 0, "consumer": "c", "lease": "L0"}).encode(),
        "resume": json.dumps({"ticket": "abc.def", "delivered": 1}).encode(),
        "status": b"",
    }
    keys = [
        "job",
        "epoch",
        "seed",
        "shuffle",
        "columns",
        "rank",
        "world_size",
        "unit",
        "worker",
        "num_workers",
        "skip_rows",
        "drop_last",
        "consumer",
        "v",
        "zzz",
    ]
    node_signer = NodeCallSigner(TicketSigner(feed.key).derived_key(KEY_PURPOSE))
    foreign_signer = NodeCallSigner(new_key())
    nodes_before = {n["node_id"] for n in feed.coordinator.status()["nodes"]}
    outcomes: Counter = Counter()
    unproven: Counter = Counter()  # node-only actions sent without a valid proof
    for i in range(10_000):
        kind = i % 4
        try:
            if kind == 0:
                command = _mutate(valid_command, rng)
                raw.get_flight_info(flight.FlightDescriptor.for_command(command), options)
            elif kind == 1:
                body = {k: _random_json(rng) for k in rng.sample(keys, rng.randint(0, 6))}
                command = json.dumps(body).encode()
                raw.get_flight_info(flight.FlightDescriptor.for_command(command), options)
            elif kind == 2:
                name = rng.choice([*valid_bodies, "register", "cached", "node_heartbeat", "??"])
                body = _mutate(valid_bodies.get(name, b"{}"), rng)
                call, proven = options, True
                if name in NODE_ACTIONS:
                    proof, proven = _fuzz_proof(name, body, rng, node_signer, foreign_signer)
                    call = call_options(None, "fuzz", 10, node_proof=proof)
                try:
                    list(raw.do_action(flight.Action(name, body), call))
                except flight.FlightError as exc:
                    if not proven:
                        unproven[type(exc).__name__] += 1
                    raise
                if not proven:
                    unproven["ok"] += 1
            else:
                path = flight.FlightDescriptor.for_path(rng.randbytes(8).hex())
                raw.get_flight_info(path, options)
            outcomes["ok"] += 1
        except flight.FlightError as exc:  # never ArrowException: nothing with a traceback
            code = error_code(exc)
            outcomes[code.value if code is not None else repr(exc)] += 1
            assert "Traceback" not in str(exc) and ".py" not in str(exc)
    assert sum(outcomes.values()) == 10_000
    assert outcomes["ok"] < 10_000 and outcomes["invalid_argument"] > 1_000
    assert "internal" not in outcomes  # no unexpected handler crash
    assert set(outcomes) <= {"ok", "invalid_argument", "unauthenticated", "unimplemented"}
    # a node-only action without a valid proof never reaches its handler
    assert set(unproven) == {"FlightUnauthenticatedError"} and unproven.total() > 400
    assert {n["node_id"] for n in feed.coordinator.status()["nodes"]} == nodes_before
    every = Counter(ids_of(FeederClient(feed.endpoint, job="after-fuzz").stream(0, seed=8)))
    assert set(every.values()) == {1} and len(every) == ROWS


def test_unknown_action_and_do_get_on_the_coordinator_are_refused(feed):
    raw = flight.FlightClient(feed.endpoint)
    with pytest.raises(flight.FlightServerError, match="unknown action"):
        list(raw.do_action(flight.Action("drop_tables", b"")))
    with pytest.raises(flight.FlightServerError, match="serves no data"):
        raw.do_get(flight.Ticket(b"x")).read_all()
    with pytest.raises(flight.FlightServerError, match="do_put is not served") as refused:
        writer, _ = raw.do_put(flight.FlightDescriptor.for_path("x"), pa.schema([]))
        writer.close()
    assert error_code(refused.value) is ErrorCode.UNIMPLEMENTED
    assert [a.type for a in raw.list_actions()] == list(ACTIONS)  # the protocol's one table


def test_a_malformed_node_message_with_a_valid_proof_names_the_field(feed):
    raw = flight.FlightClient(feed.endpoint)
    signer = NodeCallSigner(TicketSigner(feed.key).derived_key(KEY_PURPOSE))
    reg = feed.coordinator.registry
    before = ({n["node_id"] for n in feed.coordinator.status()["nodes"]}, list(reg.row_counts))
    bodies = {
        "register": ({"node_id": "n", "location": "grpc://h:1", "slot": "0"}, "slot"),
        "cached": ({"node_id": "n", "slice_id": -1, "num_rows": 1, "nbytes": 1}, "slice_id"),
        "node_heartbeat": ({"node_id": "", "stats": {}}, "node_id"),
    }
    for name, (body, field) in bodies.items():
        sent = json.dumps(body).encode()
        options = call_options(None, None, 10, node_proof=signer.proof(name, sent))
        with pytest.raises(flight.FlightServerError, match=f"{name}: {field}"):
            list(raw.do_action(flight.Action(name, sent), options))
    after = ({n["node_id"] for n in feed.coordinator.status()["nodes"]}, list(reg.row_counts))
    assert after == before


# --- sessions of their own -----------------------------------------------------------------


def test_token_is_required_on_coordinator_and_nodes(module_catalog, tmp_path):
    with local_feeder(module_catalog, cache_dir=tmp_path / "c", nodes=1, token="s3cret") as f:
        with pytest.raises(AuthError):
            FeederClient(f.endpoint, token="wrong").status()
        raw = flight.FlightClient(f.endpoint)
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(raw.do_action(flight.Action("status", b"")))
        client = FeederClient(f.endpoint, token="s3cret", job="tok")
        info = client.plan(0)
        node = flight.FlightClient(info.endpoints[0].locations[0].uri.decode())
        with pytest.raises(flight.FlightUnauthenticatedError):
            node.do_get(info.endpoints[0].ticket).read_all()
        assert sorted(ids_of(client.stream(0))) == list(range(ROWS))
        assert "s3cret" not in repr(client) and "s3cret" not in json.dumps(client.status())


def test_nodes_advertise_a_name_their_certificate_carries(module_catalog, tmp_path):
    from tests.feeder.protocol.test_auth import make_cert

    ca = make_cert(tmp_path, "ca")
    cert, key = make_cert(tmp_path, "session", dns=("localhost",), issuer=ca)  # no IP SAN
    server_tls = TLSConfig(cert, key, ca_file=ca[0])
    # nodes dial the coordinator at 127.0.0.1: they check the name it carries instead
    node_tls = TLSConfig(cert, key, ca_file=ca[0], server_name="localhost")
    with local_feeder(
        module_catalog,
        cache_dir=tmp_path / "c",
        nodes=1,
        tls=server_tls,
        node_tls=node_tls,
        advertise_host="localhost",
    ) as f:
        endpoint = f.endpoint.replace("127.0.0.1", "localhost")
        client = FeederClient(endpoint, tls=TLSConfig(ca_file=ca[0]), job="named")
        assert [n["location"].split(":")[1] for n in client.status()["nodes"]] == ["//localhost"]
        assert sorted(ids_of(client.stream(0))) == list(range(ROWS))


def test_tls_with_a_self_signed_certificate(module_catalog, tmp_path):
    from tests.feeder.protocol.test_auth import (
        CERTIFICATE_REFUSED,
        make_self_signed,
        unrelated_ca,
    )

    server_tls = make_self_signed(tmp_path)
    with local_feeder(
        module_catalog, cache_dir=tmp_path / "c", nodes=1, tls=server_tls, token="t0k"
    ) as f:
        assert f.endpoint.startswith("grpc+tls://")
        client = FeederClient(f.endpoint, token="t0k", tls=TLSConfig(ca_file=server_tls.cert_file))
        assert sorted(ids_of(client.stream(0, mode="dynamic"))) == list(range(ROWS))
        stranger = FeederClient(f.endpoint, token="t0k", tls=unrelated_ca(tmp_path), timeout=2)
        with pytest.raises(FeederError, match=CERTIFICATE_REFUSED):
            stranger.status()
        plain = FeederClient(f.endpoint.replace("grpc+tls", "grpc"), token="t0k", timeout=2)
        with pytest.raises(FeederError):
            plain.status()


def test_lost_coordinator_gives_a_clear_error_not_a_hang(module_catalog, tmp_path):
    with local_feeder(module_catalog, cache_dir=tmp_path / "c", nodes=1) as f:
        client = FeederClient(f.endpoint, timeout=2)
        stream = client.stream(0)
        next(stream)
        endpoint = f.endpoint
    with pytest.raises(FeederError, match="unreachable"):
        FeederClient(endpoint, timeout=2).status()
    with pytest.raises(FeederError, match="unreachable"):
        list(FeederClient(endpoint, timeout=2).stream(1, mode="dynamic"))
    stream.close()


def test_empty_projection_of_a_filtered_table(module_catalog, tmp_path):
    with local_feeder(module_catalog, cache_dir=tmp_path / "c", nodes=1, row_filter="id < 0") as f:
        status = FeederClient(f.endpoint).status()
        assert status["ready"] and status["rows"] == 0
        assert list(FeederClient(f.endpoint).stream(0)) == []
        assert list(FeederClient(f.endpoint).stream(0, mode="dynamic")) == []


def test_read_ahead_keeps_the_order_and_stops_cleanly(feed):
    plain = FeederClient(feed.endpoint, job="ahead")
    ahead = FeederClient(feed.endpoint, job="ahead", read_ahead=2)
    assert ids_of(ahead.stream(0, seed=7)) == ids_of(plain.stream(0, seed=7))
    stream = ahead.stream(1, seed=7)
    assert next(stream).num_rows > 0
    stream.close()  # background readers stop; the client stays usable
    assert len(ids_of(ahead.stream(1, seed=7, rank=1, world_size=2))) == ROWS // 2


# --- node-only actions ----------------------------------------------------------------------


def _registry_view(coordinator) -> tuple:
    """Everything a node-only action could change, except the live nodes' own heartbeats."""
    with coordinator._lock:
        reg = coordinator.registry
        nodes = {
            n.node_id: (n.slot, n.location, n.alive, list(n.pending)) for n in reg.nodes.values()
        }
        return nodes, list(reg.row_counts), list(reg.slice_bytes), [list(c) for c in reg.cached_by]


def test_consumers_with_the_token_cannot_call_node_only_actions(module_catalog, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "sentinel-secret-access-key-7f3a"
    with local_feeder(
        module_catalog,
        cache_dir=tmp_path / "c",
        nodes=1,
        token="t0k",
        io_properties={"s3.secret-access-key": secret},
    ) as f:
        node_id = f.coordinator.status()["nodes"][0]["node_id"]
        rows0 = f.coordinator.registry.row_counts[0]
        before = _registry_view(f.coordinator)
        bodies = {
            "register": {"node_id": "intruder", "location": "grpc://127.0.0.1:1", "slot": 0},
            "cached": {"node_id": node_id, "slice_id": 0, "num_rows": rows0, "nbytes": 10**15},
            "node_heartbeat": {"node_id": node_id, "stats": {"rows_served": 10**15}},
        }
        raw = flight.FlightClient(f.endpoint)
        for name, body in bodies.items():
            for proof in (None, "v1.1.2.3", NodeCallSigner(new_key()).proof(name, b"{}")):
                options = call_options("t0k", "a-training-job", 10, node_proof=proof)
                action = flight.Action(name, json.dumps(body).encode())
                with pytest.raises(flight.FlightUnauthenticatedError, match="node-only action"):
                    list(raw.do_action(action, options))
        assert _registry_view(f.coordinator) == before
        status = FeederClient(f.endpoint, token="t0k").status()
        assert all(n["rows_served"] < 10**15 for n in status["nodes"])
        assert secret not in json.dumps(status)
        client = FeederClient(f.endpoint, token="t0k", job="after")
        assert sorted(ids_of(client.stream(0))) == list(range(ROWS))  # the server stayed up
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert len(refusals) == 9
    assert secret not in caplog.text  # nor was it ever logged, by coordinator or node


def test_forged_stale_replayed_or_moved_node_proofs_are_refused(feed):
    raw = flight.FlightClient(feed.endpoint)
    node_key = TicketSigner(feed.key).derived_key(KEY_PURPOSE)
    # a heartbeat of an unknown node is answered "stop" and changes nothing
    body = json.dumps({"node_id": "ghost", "stats": {}}).encode()

    def call(name: str, sent: bytes, proof: str) -> object:
        options = call_options(None, None, 10, node_proof=proof)
        results = list(raw.do_action(flight.Action(name, sent), options))
        return json.loads(results[0].body.to_pybytes())

    def signer(key: bytes = node_key, skew: float = 0.0) -> NodeCallSigner:
        return NodeCallSigner(key, clock=lambda: time.time() + skew)

    good = signer().proof("node_heartbeat", body)
    assert call("node_heartbeat", body, good) == {"stop": True, "assign": []}
    refused = {
        "replayed": ("node_heartbeat", body, good),
        "another session's key": (
            "node_heartbeat",
            body,
            signer(new_key()).proof("node_heartbeat", body),
        ),
        "the ticket key itself": (
            "node_heartbeat",
            body,
            signer(feed.key).proof("node_heartbeat", body),
        ),
        "expired": ("node_heartbeat", body, signer(skew=-120).proof("node_heartbeat", body)),
        "from the future": ("node_heartbeat", body, signer(skew=120).proof("node_heartbeat", body)),
        "for another action": ("register", body, signer().proof("node_heartbeat", body)),
        "for another body": (
            "node_heartbeat",
            body.replace(b"ghost", b"gh0st"),
            signer().proof("node_heartbeat", body),
        ),
    }
    outcomes = {}
    for why, (name, sent, proof) in refused.items():
        try:
            call(name, sent, proof)
            outcomes[why] = "accepted"
        except flight.FlightUnauthenticatedError as exc:
            outcomes[why] = "refused" if "node-only action" in str(exc) else str(exc)
    assert outcomes == dict.fromkeys(refused, "refused")
    assert "ghost" not in {n["node_id"] for n in feed.coordinator.status()["nodes"]}


@pytest.mark.parametrize(
    ("mode", "shuffle"), [("static", False), ("static", "slice"), ("dynamic", False)]
)
def test_nodes_cut_batches_on_the_consumers_unit_grid(module_catalog, tmp_path, mode, shuffle):
    """Nodes send at most 100-row batches; a consumer re-batching in 64-row units asks them
    (``x-icefeed-chunks``) to cut on its grid, so only range ends fall off it — without the
    hint almost every cut would, once a range length is not a multiple of 64."""
    with local_feeder(module_catalog, cache_dir=tmp_path / "c", nodes=1, batch_rows=100) as f:
        client = FeederClient(f.endpoint, job=f"grid-{mode}-{shuffle}")
        ranges = len(client.plan(0, seed=2, shuffle=shuffle).endpoints)
        plain = ids_of(client.stream(0, mode=mode, seed=2, shuffle=shuffle))
        epoch = 1 if mode == "dynamic" else 0  # a dynamic epoch is leased out only once
        batches = list(client.stream(epoch, mode=mode, seed=2, shuffle=shuffle, unit=64))
    ids = [i for b in batches for i in b.column("id").to_pylist()]
    if mode == "static":
        assert ids == plain  # the hint moves cuts, never rows
    else:
        assert sorted(ids) == sorted(plain) == list(range(ROWS))
    cuts = list(itertools.accumulate(b.num_rows for b in batches))[:-1]
    off_grid = sum(1 for c in cuts if c % 64)
    assert ranges > 4 and len(batches) > 2 * ranges
    assert off_grid <= ranges, (off_grid, ranges, [b.num_rows for b in batches])


def test_a_small_nodes_overflow_goes_to_a_node_with_room_and_too_little_in_all_is_an_error(
    module_catalog,
):
    """Raw ``register`` calls: a node too small for its slot's share gets what fits and
    the rest is handed to a roomier node; when every slot has registered and the nodes
    hold less than the table, ``wait_ready`` raises with the numbers."""
    from feeder.coordinator.config import FeederConfig
    from feeder.coordinator.registry import cache_budget
    from feeder.coordinator.service import Coordinator
    from feeder.coordinator.session import resolve
    from feeder.protocol.node_messages import (
        NodeHeartbeat,
        NodeHeartbeatAnswer,
        RegisterAnswer,
        RegisterRequest,
    )

    served = resolve(FeederConfig(table="test.feed", slice_bytes=20_000), module_catalog)
    sizes = [cache_budget(p.estimated_bytes, row_copy=True) for p in served.plans]
    total = sum(sizes)
    odd = [s for s in range(len(sizes)) if s % 2]
    key = new_key()
    prover = NodeCallSigner(TicketSigner(key).derived_key(KEY_PURPOSE))

    def call(raw: flight.FlightClient, action: str, body: bytes) -> bytes:
        options = call_options(None, None, 10, node_proof=prover.proof(action, body))
        (result,) = list(raw.do_action(flight.Action(action, body), options))
        return result.body.to_pybytes()

    def register(raw: flight.FlightClient, node_id: str, capacity: int) -> RegisterAnswer:
        body = RegisterRequest(
            node_id=node_id,
            location="grpc://127.0.0.1:1",
            pid=1,
            cache_dir=f"/cache/{node_id}",
            capacity_bytes=capacity,
        ).to_json()
        return RegisterAnswer.from_json(call(raw, "register", body))

    coordinator = Coordinator(served, signer=TicketSigner(key), slots=2)
    raw = flight.FlightClient(coordinator.endpoint)
    try:
        roomy = register(raw, "roomy", total)
        assert list(roomy.assigned) == list(range(0, len(sizes), 2))
        small = register(raw, "small", sizes[odd[0]])  # room for its first slice only
        assert list(small.assigned) == odd[:1]
        beat = NodeHeartbeat(node_id="roomy", stats={}).to_json()
        handed = NodeHeartbeatAnswer.from_json(call(raw, "node_heartbeat", beat))
        assert list(handed.assign) == odd[1:]
        assert coordinator._nodes.capacity_error is None
    finally:
        raw.close()
        coordinator.close()

    coordinator = Coordinator(served, signer=TicketSigner(key), slots=2)
    raw = flight.FlightClient(coordinator.endpoint)
    try:
        register(raw, "a", total // 4)
        assert coordinator._nodes.capacity_error is None  # slot 1's room is not known yet
        register(raw, "b", total // 4)
        with pytest.raises(FeederError, match=r"cannot fit") as err:
            coordinator.wait_ready(30)
        message = str(err.value)
        assert f"about {total:,} bytes" in message
        assert f"a (slot 0, /cache/a): {total // 4:,}" in message
        assert f"b (slot 1, /cache/b): {total // 4:,}" in message
        assert "more nodes" in message and "feeder.cache.sizeLimit" in message
        assert "row_filter" in message
    finally:
        raw.close()
        coordinator.close()
