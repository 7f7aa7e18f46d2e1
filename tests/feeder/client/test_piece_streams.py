"""PieceStreams: bundled per-node reads of many slice ranges, against real in-process data
nodes on loopback and a real Iceberg table."""

from __future__ import annotations

import socket

import pyarrow as pa
import pytest

from feeder.client.failover import NodeReader
from feeder.client.piece_streams import Piece, PieceStreams
from feeder.coordinator.planning import plan_slices
from feeder.node.cache import SliceCache
from feeder.node.datanode import DataNode
from feeder.node.materialize import SliceSource
from feeder.protocol.auth import call_options, location_uri
from feeder.protocol.tickets import TicketClaims, TicketSigner, new_key
from jobs.errors import AuthError
from tests.feeder.tables import make_table

KEY = new_key()
TOKEN = "piece-token"
JOB = "job-p"


@pytest.fixture()
def nodes(catalog, tmp_path):
    """Two data nodes serving the same table (each materialises what it is asked for)."""
    table = make_table(catalog, files=2, rows_per_file=3000, row_group_rows=500)
    snap = table.current_snapshot().snapshot_id
    plans = plan_slices(table, snapshot_id=snap, row_filter=None, columns=None, slice_bytes=30_000)
    source = SliceSource(table, snapshot_id=snap, row_filter=None, columns=None)
    started = []
    for name in ("a", "b"):
        node = DataNode(
            signer=TicketSigner(KEY), cache=SliceCache(tmp_path / name), token=TOKEN, batch_rows=300
        )
        node.configure(snapshot_id=snap, source=source, plans={p.slice_id: p for p in plans})
        started.append(node)
    yield started, snap, plans
    for node in started:
        node.shutdown()
        node.cache.close()


def _reader() -> NodeReader:
    def no_resume(ticket: str, delivered: int) -> tuple[str, list[str]]:
        raise AssertionError("a whole-range failover needs no resume")

    return NodeReader(
        options=lambda timeout, chunks, windows: call_options(
            TOKEN, JOB, timeout, chunks=chunks, windows=windows
        ),
        resume=no_resume,
        tls=None,
        retry_seconds=5.0,
        stall_seconds=10.0,
    )


def _where(node: DataNode) -> str:
    return location_uri("127.0.0.1", node.port, None)


def _pieces(snap, plans, locations, job=JOB) -> list[Piece]:
    signer = TicketSigner(KEY)
    out = []
    for i in range(24):
        plan = plans[i % len(plans)]
        start = (i * 37) % 500
        stop = start + (i * 53) % 300
        claims = TicketClaims(
            job=job,
            snapshot_id=snap,
            slice_id=plan.slice_id,
            start=start,
            stop=stop,
            epoch=1,
            seed=2,
            shuffle=False,
            columns=None,
        )
        out.append(Piece(signer.sign(claims).decode(), tuple(locations[i % 2]), stop - start))
    return out


def _ids(batches: list[pa.RecordBatch]) -> list[int]:
    return [i for batch in batches for i in batch.column("id").to_pylist()]


def _singles(reader: NodeReader, pieces: list[Piece]) -> list[list[int]]:
    return [_ids(list(reader.read(p.ticket, list(p.locations)))) for p in pieces]


def test_pieces_come_back_whole_and_in_order_with_each_node_read_once(nodes):
    (a, b), snap, plans = nodes
    reader = _reader()
    pieces = _pieces(snap, plans, [[_where(a)], [_where(b)]])
    expected = _singles(reader, pieces)
    served = [n.stats()["rows_served"] for n in (a, b)]
    # few rows ahead and small bundles: the node threads wait on the consumer often
    streams = PieceStreams(pieces, reader, rows_ahead=100, bundle=5)
    try:
        for i, piece in enumerate(pieces):
            got = _ids(streams.take(i))
            assert len(got) == piece.rows and got == expected[i]
    finally:
        streams.close()
    rows = [sum(p.rows for p in pieces[k::2]) for k in (0, 1)]
    assert [n.stats()["rows_served"] - s for n, s in zip((a, b), served, strict=True)] == rows
    reader.close()


def test_a_refused_piece_raises_at_its_own_take(nodes):
    (a, _b), snap, plans = nodes
    reader = _reader()
    pieces = _pieces(snap, plans, [[_where(a)], [_where(a)]])
    bad = _pieces(snap, plans, [[_where(a)], [_where(a)]], job="someone-else")[7]
    pieces[7] = bad
    streams = PieceStreams(pieces, reader, rows_ahead=10_000, bundle=4)
    try:
        for i in range(4):  # the bundle before the bad one is served
            assert sum(batch.num_rows for batch in streams.take(i)) == pieces[i].rows
        with pytest.raises(AuthError, match="job"):
            for i in range(4, 8):
                streams.take(i)
        assert i == 4  # the bad ticket's bundle is refused whole, at its first piece
    finally:
        streams.close()
    reader.close()


def test_a_dead_node_fails_over_piece_by_piece_and_every_row_arrives_once(nodes, caplog):
    (a, b), snap, plans = nodes
    with socket.socket() as s:  # a port nobody listens on: the "dead" node
        s.bind(("127.0.0.1", 0))
        dead = location_uri("127.0.0.1", s.getsockname()[1], None)
    reader = _reader()
    pieces = _pieces(snap, plans, [[dead, _where(b)], [_where(a)]])
    expected = _singles(_reader(), [Piece(p.ticket, p.locations[-1:], p.rows) for p in pieces])
    served = b.stats()["rows_served"]
    streams = PieceStreams(pieces, reader, rows_ahead=1_000, bundle=6)
    try:
        for i in range(len(pieces)):
            assert _ids(streams.take(i)) == expected[i]
    finally:
        streams.close()
    assert b.stats()["rows_served"] - served == sum(p.rows for p in pieces[0::2])
    assert any("bundle" in r.getMessage() and dead in r.getMessage() for r in caplog.records)
    reader.close()


def test_bundle_size_is_checked():
    with pytest.raises(ValueError, match="bundle"):
        PieceStreams([], _reader(), rows_ahead=1, bundle=0)
