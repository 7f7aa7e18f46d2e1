"""The rows one verified ticket names, as a data node serves them (PROTOCOL.md, ``do_get``).

Table order and MIX block streams are read as the co-located consumer reads them
(:func:`feeder.protocol.slice_rows.sequential_rows`); a slice-local shuffle gathers
rows through the slice's seeded permutation from the node's row copy, on the
cache's gather threads. :func:`range_rows` returns either a table (table order:
the caller can hand it to Flight whole) or a lazy iterator of batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from feeder.node.cache import SliceCache
from feeder.protocol.chunking import Chunking
from feeder.protocol.slice_rows import DEFAULT_TAKE_ROWS, sequential_rows, slice_permutation
from feeder.protocol.tickets import TicketClaims


def range_rows(
    cache: SliceCache,
    opened: pa.Table,
    claims: TicketClaims,
    *,
    chunking: Chunking,
    batch_rows: int,
) -> pa.Table | Iterator[pa.RecordBatch]:
    """Return the rows ``claims`` names of the slice ``opened`` (the mapped cache file).

    Args:
        cache: the node's slice cache (gathers shuffled rows).
        opened: the slice's memory-mapped table (``SliceCache.open``).
        claims: a verified ticket's claims.
        chunking: where the consumer wants batches cut.
        batch_rows: the node's largest batch.

    Returns:
        Table order: the range as a zero-copy table, already cut into batches.
        Shuffled: a lazy iterator of gathered batches.

    Raises:
        FeederError: the range lies outside the slice, or a column is unknown.
    """
    rows = sequential_rows(opened, claims, chunking=chunking, batch_rows=batch_rows)
    if rows is not None:
        return rows
    perm = slice_permutation(opened.num_rows, claims.seed, claims.epoch, claims.slice_id)
    return cache.read(
        claims.slice_id,
        permutation=perm,
        start=claims.start,
        stop=claims.stop,
        columns=claims.columns,
        batch_rows=min(batch_rows, DEFAULT_TAKE_ROWS),
        chunking=chunking,
    )
