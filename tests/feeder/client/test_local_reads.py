"""Local reads give exactly the rows, order and batches ``do_get`` gives; else Flight."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from feeder.client.local_reads import LocalReads
from feeder.protocol.auth import call_options, connect
from feeder.protocol.chunking import Chunking
from feeder.protocol.shuffle_kind import Shuffle
from tests.feeder.local_node import SLICE_ROWS, TOKEN, CachedNode, cached_node


@pytest.fixture(scope="module")
def node():
    with cached_node(batch_rows=256) as started:
        yield started


def flight_batches(node: CachedNode, ticket: str, chunks: Chunking | None) -> list[pa.RecordBatch]:
    client = connect(node.location)
    try:
        options = call_options(TOKEN, "job-a", 30, chunks=chunks)
        return [c.data for c in client.do_get(pa.flight.Ticket(ticket.encode()), options)]
    finally:
        client.close()


def reader(node: CachedNode, token: str = TOKEN, job: str = "job-a") -> LocalReads:
    return LocalReads(token=token, job=job, sockets=lambda: {node.location: str(node.local.path)})


CASES = {
    "table order": {},
    "slice shuffle": {"shuffle": Shuffle.SLICE},
    "mix blocks": {"shuffle": Shuffle.MIX, "block_rows": 64},
    "projected": {"shuffle": Shuffle.MIX, "block_rows": 50, "columns": ("name", "id")},
}


@pytest.mark.parametrize("fields", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("chunks", [None, Chunking.at(37, 100)], ids=["no-hint", "hint"])
def test_local_batches_equal_the_flight_batches(node, fields, chunks):
    tickets = [node.ticket(1, 30, 650, **fields), node.ticket(0, 0, SLICE_ROWS[0], **fields)]
    for ticket in [*tickets, ",".join(tickets)]:
        expected = flight_batches(node, ticket, chunks)
        local = reader(node).open(node.location, ticket, chunks)
        assert local is not None
        got = list(local)
        assert [b.num_rows for b in got] == [b.num_rows for b in expected]
        assert pa.Table.from_batches(got).equals(pa.Table.from_batches(expected))


def test_table_order_is_read_zero_copy_from_the_mapped_file(node):
    local = reader(node).open(node.location, node.ticket(2, 0, SLICE_ROWS[2]), None)
    batch = next(iter(local))
    before = pa.total_allocated_bytes()
    assert batch.column("id")[0].as_py() == sum(SLICE_ROWS[:2])
    assert batch.nbytes > 0 and pa.total_allocated_bytes() == before  # nothing copied


def test_an_unreachable_socket_falls_back_once_logged(node, caplog, tmp_path):
    reads = LocalReads(
        token=TOKEN, job="job-a", sockets=lambda: {node.location: str(tmp_path / "gone.sock")}
    )
    with caplog.at_level(logging.WARNING, "feeder.client.local_reads"):
        assert reads.open(node.location, node.ticket(0, 0, 10), None) is None
        assert reads.open(node.location, node.ticket(0, 0, 10), None) is None
    assert len(caplog.records) == 1
    assert "cannot open its local socket" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("token", "job"), [("wrong", "job-a"), (TOKEN, "job-b")])
def test_a_refused_read_falls_back(node, token, job, caplog):
    with caplog.at_level(logging.WARNING, "feeder.client.local_reads"):
        assert reader(node, token, job).open(node.location, node.ticket(0, 0, 10), None) is None
    assert "refused" in caplog.text


def test_a_node_without_a_socket_is_read_over_flight(node):
    reads = LocalReads(token=TOKEN, job="job-a", sockets=dict)
    assert reads.socket_for(node.location) is None
    assert reads.open(node.location, node.ticket(0, 0, 10), None) is None


def test_a_failing_socket_listing_falls_back_once_logged(node, caplog):
    def unreachable() -> dict[str, str]:
        raise ConnectionError("coordinator restarting")

    reads = LocalReads(token=TOKEN, job="job-a", sockets=unreachable)
    with caplog.at_level(logging.WARNING, "feeder.client.local_reads"):
        assert reads.open(node.location, node.ticket(0, 0, 10), None) is None
        assert reads.open(node.location, node.ticket(0, 0, 10), None) is None
    assert len(caplog.records) == 1 and "coordinator restarting" in caplog.text
