"""The rows one verified ticket names, as a data node serves them (PROTOCOL.md, ``do_get``).

Table order is zero-copy slices of the memory-mapped slice; a MIX block stream is
gathered as runs of contiguous rows (:mod:`feeder.node.blocks`); a slice-local
shuffle gathers rows through the slice's seeded permutation (built once per
slice and epoch). :func:`range_rows` returns either a table (table order: the
caller can hand it to Flight whole) or a lazy iterator of batches.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from feeder.node.blocks import read_block_stream
from feeder.node.cache import DEFAULT_TAKE_ROWS, SliceCache, check_range, cut
from feeder.protocol.chunking import Chunking
from feeder.protocol.shuffle import compact_row_permutation
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import TicketClaims

_PERMUTATION_LOCK = threading.Lock()


def _permutation(num_rows: int, seed: int, epoch: int, slice_id: int) -> np.ndarray:
    # Under a lock: consumers reading the same slice at once build its order once
    # (a build holds ~4 bytes a row, as does every cached order).
    with _PERMUTATION_LOCK:
        return _cached_permutation(num_rows, seed, epoch, slice_id)


@functools.lru_cache(maxsize=4)
def _cached_permutation(num_rows: int, seed: int, epoch: int, slice_id: int) -> np.ndarray:
    # Cached because consumers fetch one slice in several ranges; int32 when it fits.
    perm = compact_row_permutation(num_rows, seed=seed, epoch=epoch, slice_id=slice_id)
    perm.setflags(write=False)
    return perm


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
        cache: the node's slice cache (projects columns, gathers shuffled rows).
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
    check_range(claims.slice_id, opened.num_rows, claims.start, claims.stop)
    table = cache.select(opened, claims.columns)
    rows = claims.stop - claims.start
    if claims.shuffle is Shuffle.OFF:
        part = table.slice(claims.start, rows)
        batches = list(cut(part, chunking.sizes(rows, batch_rows)))
        return pa.Table.from_batches(batches, schema=table.schema)
    if claims.shuffle is Shuffle.MIX:
        return read_block_stream(
            table,
            slice_id=claims.slice_id,
            start=claims.start,
            stop=claims.stop,
            block_rows=claims.block_rows,
            seed=claims.seed,
            epoch=claims.epoch,
            sizes=chunking.sizes(rows, batch_rows),
        )
    perm = _permutation(opened.num_rows, claims.seed, claims.epoch, claims.slice_id)
    return cache.read(
        claims.slice_id,
        permutation=perm,
        start=claims.start,
        stop=claims.stop,
        columns=claims.columns,
        batch_rows=min(batch_rows, DEFAULT_TAKE_ROWS),
        chunking=chunking,
    )
