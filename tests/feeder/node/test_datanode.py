"""The data node's Flight server, in process, on a real small Iceberg table and real sockets."""

from __future__ import annotations

import json
import random
import threading

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from feeder.coordinator.planning import plan_slices
from feeder.node.cache import SliceCache
from feeder.node.datanode import DataNode
from feeder.node.materialize import SliceSource
from feeder.protocol.auth import (
    call_options,
    connect,
    location_uri,
)
from feeder.protocol.chunking import CHUNKS_HEADER, Chunking
from feeder.protocol.shuffle import row_permutation
from feeder.protocol.tickets import TicketClaims, TicketSigner, new_key
from tests.feeder.tables import make_table

KEY = new_key()
TOKEN = "node-token"


@pytest.fixture()
def served(catalog, tmp_path):
    """A DataNode with every slice planned but nothing cached yet."""
    table = make_table(catalog, files=2, rows_per_file=3000, row_group_rows=500)
    snap = table.current_snapshot().snapshot_id
    plans = plan_slices(table, snapshot_id=snap, row_filter=None, columns=None, slice_bytes=30_000)
    source = SliceSource(table, snapshot_id=snap, row_filter=None, columns=None)
    node = DataNode(
        signer=TicketSigner(KEY), cache=SliceCache(tmp_path / "cache"), token=TOKEN, batch_rows=400
    )
    node.configure(snapshot_id=snap, source=source, plans={p.slice_id: p for p in plans})
    client = connect(location_uri("127.0.0.1", node.port, None))
    yield node, client, snap, plans, source
    client.close()
    node.shutdown()
    node.cache.close()


def claims(
    snap,
    slice_id=0,
    start=0,
    stop=100,
    *,
    job="job-a",
    shuffle=False,
    seed=5,
    epoch=1,
    columns=None,
):
    return TicketClaims(
        job=job,
        snapshot_id=snap,
        slice_id=slice_id,
        start=start,
        stop=stop,
        epoch=epoch,
        seed=seed,
        shuffle=shuffle,
        columns=columns,
    )


def fetch(client, ticket: bytes, job="job-a", token=TOKEN) -> pa.Table:
    return client.do_get(flight.Ticket(ticket), call_options(token, job, 10)).read_all()


def test_each_slice_is_served_in_table_order_and_in_epoch_order(served):
    node, client, snap, plans, source = served
    signer = TicketSigner(KEY)
    seen, served_rows = [], 0
    for plan in plans:
        whole = source.materialize(plan).table
        n = whole.num_rows
        got = fetch(client, signer.sign(claims(snap, plan.slice_id, 0, n)))
        assert got.equals(whole)
        perm = row_permutation(n, seed=5, epoch=1, slice_id=plan.slice_id, shuffle=True)
        part = fetch(client, signer.sign(claims(snap, plan.slice_id, 7, n - 3, shuffle=True)))
        assert part["id"].to_pylist() == whole["id"].take(perm[7 : n - 3]).to_pylist()
        seen.extend(got["id"].to_pylist())
        served_rows += n + (n - 10)
    assert sorted(seen) == list(range(6000))
    stats = node.stats()
    assert stats["slices_cached"] == len(plans)
    assert stats["rows_served"] == served_rows and stats["errors"] == 0


def test_projection_and_rows_served_counter(served):
    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    got = fetch(client, signer.sign(claims(snap, 1, 10, 60, columns=("name", "id"))))
    assert got.schema.names == ["name", "id"] and got.num_rows == 50
    got = fetch(client, signer.sign(claims(snap, 1, 0, 33, shuffle=True, columns=("x",))))
    assert got.schema.names == ["x"] and got.num_rows == 33
    assert node.stats()["rows_served"] == 83


def test_storage_is_read_once_then_served_from_cache(served):
    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    fetch(client, signer.sign(claims(snap, 2, 0, 10)))
    first = node.stats()["storage_bytes_read"]
    assert first > 0
    for seed in range(3):
        fetch(client, signer.sign(claims(snap, 2, 0, 50, shuffle=True, seed=seed)))
    assert node.stats()["storage_bytes_read"] == first


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda s, snap: s.sign(claims(snap, job="other-job")),
            flight.FlightUnauthorizedError,
            "job",
        ),
        (lambda s, snap: s.sign(claims(snap + 1)), flight.FlightUnauthorizedError, "snapshot"),
        (
            lambda s, snap: TicketSigner(new_key()).sign(claims(snap)),
            flight.FlightUnauthenticatedError,
            "feeder was restarted",  # another session's key: its sess claim says so
        ),
        (
            lambda s, snap: s.sign(claims(snap)).split(b".")[0] + b"." + b"A" * 43,
            flight.FlightUnauthenticatedError,
            "bad signature",
        ),
        (lambda s, snap: s.sign(claims(snap, 0, 0, 10**6)), flight.FlightServerError, "outside"),
        (lambda s, snap: s.sign(claims(snap, 999)), flight.FlightUnavailableError, "unknown"),
        (
            lambda s, snap: s.sign(claims(snap, columns=("nope",))),
            flight.FlightServerError,
            "unknown column",
        ),
        (lambda s, snap: b"garbage", flight.FlightUnauthenticatedError, "invalid ticket"),
    ],
)
def test_bad_tickets_get_flight_errors_and_the_node_keeps_serving(served, make, error, match):
    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    with pytest.raises(error, match=match):
        fetch(client, make(signer, snap))
    assert fetch(client, signer.sign(claims(snap, 0, 0, 5))).num_rows == 5
    assert node.stats()["errors"] == 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_are_cut_where_the_chunking_hint_says(served, shuffle):
    """Node batches are at most 400 rows (``batch_rows``); with ``lead=30, unit=64`` the
    first holds 30 rows and the others multiples of 64 (shuffled: of the gather size)."""
    _node, client, snap, _plans, _ = served
    ticket = TicketSigner(KEY).sign(claims(snap, 0, 5, 905, shuffle=shuffle))
    plain = client.do_get(flight.Ticket(ticket), call_options(TOKEN, "job-a", 10)).read_all()
    options = call_options(TOKEN, "job-a", 10, chunks=Chunking(lead=30, unit=64))
    hinted = client.do_get(flight.Ticket(ticket), options).read_all()
    assert hinted.equals(plain)  # the hint moves cuts, never rows
    sizes = [b.num_rows for b in hinted.to_batches()]
    assert sizes[0] == 30 and sum(sizes) == 900
    assert all(s % 64 == 0 and s <= 400 for s in sizes[1:-1]), sizes
    assert plain.to_batches()[0].num_rows != 30


@pytest.mark.parametrize("value", ["30", "64,64", "x,y"])
def test_a_malformed_chunking_hint_is_a_flight_error_and_the_node_keeps_serving(served, value):
    node, client, snap, _plans, _ = served
    ticket = TicketSigner(KEY).sign(claims(snap, 0, 0, 50))
    options = call_options(TOKEN, "job-a", 10)
    bad = flight.FlightCallOptions(
        headers=[*options.headers, (CHUNKS_HEADER.encode(), value.encode())]
    )
    with pytest.raises(flight.FlightServerError, match=CHUNKS_HEADER):
        client.do_get(flight.Ticket(ticket), bad).read_all()
    assert fetch(client, ticket).num_rows == 50
    assert node.stats()["errors"] == 1


def test_missing_job_header_and_missing_token_are_refused(served):
    _node, client, snap, _plans, _ = served
    ticket = TicketSigner(KEY).sign(claims(snap))
    with pytest.raises(flight.FlightUnauthorizedError):
        client.do_get(flight.Ticket(ticket), call_options(TOKEN, None, 10)).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        fetch(client, ticket, token=None)
    with pytest.raises(flight.FlightUnauthenticatedError):
        fetch(client, ticket, token="wrong")


@pytest.mark.slow
def test_fuzz_ten_thousand_random_and_mutated_tickets(served):
    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    good = signer.sign(claims(snap, 0, 0, 20))
    rnd = random.Random(1234)
    options = call_options(TOKEN, "job-a", 10)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(10_000):
        kind = i % 4
        if kind == 0:
            raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200)))
        elif kind == 1:
            data = bytearray(good)
            for _ in range(rnd.randrange(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            raw = bytes(data)
        elif kind == 2:
            raw = good[: rnd.randrange(len(good))] + good[rnd.randrange(len(good)) :]
        else:
            payload = json.dumps({"v": 1, "slice": rnd.randrange(-5, 50), "job": "job-a"})
            raw = payload.encode() + b"." + bytes(rnd.getrandbits(8) for _ in range(32))
        try:
            client.do_get(flight.Ticket(raw), options).read_all()
            outcomes["ok"] += 1
            # only a ticket equivalent to the good one may pass (e.g. splice at the same
            # offset, or base64 padding bits that decode to the same bytes)
            assert signer.verify(raw) == signer.verify(good)
        except flight.FlightError:
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 9_900
    assert fetch(client, good).num_rows == 20
    assert node.stats()["errors"] == outcomes["refused"]


def test_node_memory_stays_small_while_streaming_a_large_slice(tmp_path):
    n = 600_000  # ~41 MB: 8 float64 + 1 int32 columns, 68 bytes a row
    cols = {f"f{i}": np.random.default_rng(i).random(n) for i in range(8)}
    cols["id"] = np.arange(n, dtype=np.int32)
    cache = SliceCache(tmp_path)
    entry = cache.write(0, pa.table(cols))
    del cols
    node = DataNode(signer=TicketSigner(KEY), cache=cache, batch_rows=8192)
    node.configure(snapshot_id=1, source=None, plans={})
    client = connect(location_uri("127.0.0.1", node.port, None))
    try:
        baseline = pa.total_allocated_bytes()
        for shuffle in (False, True):
            ticket = TicketSigner(KEY).sign(claims(1, 0, 0, n, shuffle=shuffle))
            reader = client.do_get(flight.Ticket(ticket), call_options(None, "job-a", 60))
            rows, peak = 0, 0
            for chunk in reader:
                rows += chunk.data.num_rows
                peak = max(peak, pa.total_allocated_bytes() - baseline)
                del chunk
            assert rows == n
            # client and server share this process: both together stay far below the file
            assert peak < entry.nbytes / 4, (shuffle, peak, entry.nbytes)
    finally:
        client.close()
        node.shutdown()
        cache.close()


def test_storage_failure_during_failover_is_a_flight_error(served):
    node, client, snap, plans, _ = served
    signer = TicketSigner(KEY)
    # the data file vanishes from table storage before this node ever cached slice 3
    from pyiceberg.io.pyarrow import PyArrowFileIO

    PyArrowFileIO().delete(plans[3].file_path)
    with pytest.raises(flight.FlightError, match="slice 3"):
        fetch(client, signer.sign(claims(snap, 3, 0, 5)))
    assert node.stats()["errors"] == 1
    ok = next(p for p in plans if p.file_path != plans[3].file_path)
    assert fetch(client, signer.sign(claims(snap, ok.slice_id, 0, 5))).num_rows == 5


def test_many_jobs_read_the_same_cached_slice_at_once(served):
    node, _client, snap, plans, source = served
    signer = TicketSigner(KEY)
    whole = source.materialize(plans[0]).table
    n = whole.num_rows
    jobs = [("a", 1, ("id",), True), ("b", 2, ("id", "x"), True), ("c", 0, None, False)]
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def consume(job, seed, columns, shuffle):
        try:
            c = connect(location_uri("127.0.0.1", node.port, None))
            got = []
            for _ in range(5):
                ticket = signer.sign(
                    claims(snap, 0, 0, n, job=job, seed=seed, shuffle=shuffle, columns=columns)
                )
                table = fetch(c, ticket, job=job)
                assert table.schema.names == list(columns or whole.schema.names)
                got = table["id"].to_pylist()
            results[job] = got
            c.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = whole["id"].to_pylist()
    for job, seed, _cols, shuffle in jobs:
        perm = row_permutation(n, seed=seed, epoch=1, slice_id=0, shuffle=shuffle)
        assert results[job] == (ids if perm is None else [ids[i] for i in perm])
    assert results["a"] != results["b"]
    assert node.stats()["slices_cached"] == 1


def _bundle(*tickets: bytes) -> bytes:
    return b",".join(tickets)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_bundle_streams_its_ranges_in_order_as_single_tickets_would(served, shuffle):
    node, client, snap, plans, _ = served
    signer = TicketSigner(KEY)
    ranges = [(plans[-1].slice_id, 5, 90), (plans[0].slice_id, 0, 40), (plans[1].slice_id, 7, 7)]
    ranges.append((plans[0].slice_id, 40, 333))
    tickets = [signer.sign(claims(snap, s, a, b, shuffle=shuffle)) for s, a, b in ranges]
    singles = [fetch(client, t) for t in tickets]
    before = node.stats()["rows_served"]
    got = fetch(client, _bundle(*tickets))
    assert got.equals(pa.concat_tables(singles))
    assert got.num_rows == sum(b - a for _, a, b in ranges)
    assert node.stats()["rows_served"] - before == got.num_rows


def test_a_bundle_of_the_most_tickets_is_served_and_one_more_is_refused(served):
    from feeder.protocol.tickets import MAX_BUNDLE_TICKETS

    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    tickets = [signer.sign(claims(snap, 0, i, i + 1)) for i in range(MAX_BUNDLE_TICKETS)]
    whole = fetch(client, signer.sign(claims(snap, 0, 0, MAX_BUNDLE_TICKETS)))
    assert fetch(client, _bundle(*tickets)).equals(whole)
    more = [*tickets, signer.sign(claims(snap, 0, 0, 1))]
    with pytest.raises(flight.FlightUnauthenticatedError, match=f"at most {MAX_BUNDLE_TICKETS}"):
        fetch(client, _bundle(*more))
    assert fetch(client, signer.sign(claims(snap, 0, 0, 5))).num_rows == 5
    assert node.stats()["errors"] == 1


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            lambda s, snap: s.sign(claims(snap, 1, job="other-job")),
            flight.FlightUnauthorizedError,
            "job",
        ),
        (
            lambda s, snap: s.sign(claims(snap, 1, columns=("id",))),
            flight.FlightServerError,
            "same columns",
        ),
        (lambda s, snap: s.sign(claims(snap, 1, 0, 10**6)), flight.FlightServerError, "outside"),
        (lambda s, snap: s.sign(claims(snap + 1, 1)), flight.FlightUnauthorizedError, "snapshot"),
        (lambda s, snap: b"", flight.FlightUnauthenticatedError, "empty ticket"),
        (lambda s, snap: b"garbage", flight.FlightUnauthenticatedError, "invalid ticket"),
    ],
)
def test_one_bad_ticket_refuses_the_whole_bundle_before_a_row_is_sent(served, bad, error, match):
    node, client, snap, _plans, _ = served
    signer = TicketSigner(KEY)
    good = signer.sign(claims(snap, 0, 0, 50))
    before = node.stats()["rows_served"]
    with pytest.raises(error, match=match):
        fetch(client, _bundle(good, bad(signer, snap), good))
    assert node.stats()["rows_served"] == before  # refused whole: no row went out first
    assert fetch(client, _bundle(good, good)).num_rows == 100
    assert node.stats()["errors"] == 1


def _mix_claims(snap, slice_id, start, stop, **kw):
    from feeder.protocol.mix import DEFAULT_BLOCK_ROWS
    from feeder.protocol.shuffle_kind import Shuffle

    base = claims(snap, slice_id, start, stop, **kw)
    return TicketClaims(
        **{**base.__dict__, "shuffle": Shuffle.MIX, "block_rows": DEFAULT_BLOCK_ROWS // 8}
    )


def _window_options(specs, chunks=None):
    from feeder.protocol.window_gather import windows_header

    return call_options(TOKEN, "job-a", 10, chunks=chunks, windows=windows_header(specs))


def test_whole_windows_come_ordered_as_the_consumer_would_order_them(served):
    """A bundle with the windows header: the node gathers and orders each window itself —
    the same rows in the same order as the consumer ordering the plain pieces, cut on the
    consumer's grid, counted as ordered rows, the schema marked."""
    from feeder.protocol.window_gather import WindowSpec, is_marked
    from feeder.protocol.window_order import mix_window

    node, client, snap, plans, _ = served
    signer = TicketSigner(KEY)
    # two windows: one piece of every slice each (block stream positions)
    windows = [[(p.slice_id, 0, 320) for p in plans], [(p.slice_id, 320, 640) for p in plans]]
    keeps = [(0, 320 * len(plans)), (17, 320 * len(plans) - 5)]
    tickets = [[signer.sign(_mix_claims(snap, *r)) for r in w] for w in windows]
    expected = []
    for w, (ts, keep) in enumerate(zip(tickets, keeps, strict=True)):
        pieces = fetch(client, _bundle(*ts))  # plain pieces, in slice order
        expected.append(
            mix_window(
                pieces.to_batches(),
                pieces.schema,
                rows=pieces.num_rows,
                keep_start=keep[0],
                keep_stop=keep[1],
                seed=5,
                epoch=1,
                window=7 + w,
            )
        )
    specs = [WindowSpec(7 + w, len(plans), *keep) for w, keep in enumerate(keeps)]
    before = node.stats()
    reader = client.do_get(
        flight.Ticket(_bundle(*tickets[0], *tickets[1])),
        _window_options(specs, Chunking(lead=30, unit=64)),
    )
    assert is_marked(reader.schema)
    got = reader.read_all()
    want = pa.Table.from_batches(expected)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert got.equals(want.replace_schema_metadata(got.schema.metadata))
    sizes = [b.num_rows for b in got.to_batches()]
    ends = np.cumsum(sizes).tolist()
    assert sizes[0] == 30 and all(
        (e - 30) % 64 == 0 or e in (keeps[0][1], got.num_rows) for e in ends
    )
    after = node.stats()
    assert after["rows_served_ordered"] - before["rows_served_ordered"] == got.num_rows
    assert after["rows_served"] - before["rows_served"] == got.num_rows


@pytest.mark.parametrize(
    ("header", "match"),
    [("1:2:0:10", "names 2 pieces"), ("x", "window:pieces"), ("0:1:0:100000", "outside")],
)
def test_a_bad_windows_header_is_a_flight_error_and_the_node_keeps_serving(served, header, match):
    node, client, snap, plans, _ = served
    signer = TicketSigner(KEY)
    ticket = signer.sign(_mix_claims(snap, plans[0].slice_id, 0, 64))
    options = call_options(TOKEN, "job-a", 10)
    bad = flight.FlightCallOptions(
        headers=[*options.headers, (b"x-icefeed-windows", header.encode())]
    )
    with pytest.raises(flight.FlightServerError, match=match):
        client.do_get(flight.Ticket(ticket), bad).read_all()
    assert fetch(client, ticket).num_rows == 64
    assert node.stats()["errors"] == 1
