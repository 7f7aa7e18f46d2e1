"""The rows a verified ticket names, from a slice's mapped cache file: pure pyarrow and numpy.

Both sides that read a cache file use it: the data node, streaming a range over
Flight (:mod:`feeder.node.ranges`), and a co-located consumer, reading the file
it was handed over a local socket (:mod:`feeder.client.local_reads`). So a range
comes out in the same order and cut into the same batches either way.

A cache file is an Arrow IPC file of one record batch whose schema metadata may
name the slice's row-major copy (:data:`ROWS_TOKEN_KEY`, stripped when read:
served schemas never show it).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from feeder.protocol.blocks import read_block_stream
from feeder.protocol.chunking import Chunking
from feeder.protocol.shuffle import compact_row_permutation
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import TicketClaims
from jobs.errors import FeederError

#: schema metadata key of a cache file naming its row-major copy (stripped when read)
ROWS_TOKEN_KEY = b"icefeed.rows"
#: rows per ``take`` when a shuffled range is gathered: smaller than sequential batches,
#: because gathered batches are a node's private memory (a few in flight per stream)
DEFAULT_TAKE_ROWS = 32 * 1024

_PERMUTATION_LOCK = threading.Lock()


def read_cache_file(source: pa.NativeFile) -> tuple[pa.Table, bytes | None]:
    """Return the table of a cache file (zero-copy over a mapped ``source``) and the token
    naming its row copy (None without one); the token is stripped from the schema.

    Raises:
        pyarrow.ArrowInvalid: ``source`` is not an Arrow IPC file.
    """
    table = pa.ipc.open_file(source).read_all()
    metadata = dict(table.schema.metadata or {})
    token = metadata.pop(ROWS_TOKEN_KEY, None)
    return table.replace_schema_metadata(metadata or None), token


def check_range(slice_id: int, num_rows: int, start: int, stop: int) -> None:
    """Raise FeederError unless ``0 <= start <= stop <= num_rows``."""
    if not 0 <= start <= stop <= num_rows:
        raise FeederError(f"rows [{start}, {stop}) are outside slice {slice_id} of {num_rows} rows")


def select(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    """Project ``table`` to ``columns`` (None: all); raises FeederError for unknown names."""
    if columns is None:
        return table
    missing = [c for c in columns if c not in table.schema.names]
    if missing:
        raise FeederError(f"unknown column(s) {missing}; cached columns: {table.schema.names}")
    return table.select(list(columns))


def cut(table: pa.Table, sizes: Sequence[int]) -> Iterator[pa.RecordBatch]:
    """Yield ``table``'s rows as zero-copy batches of ``sizes`` rows (split further only
    where ``table`` itself is chunked); ``sizes`` must sum to ``table.num_rows``."""
    offset = 0
    for size in sizes:
        yield from table.slice(offset, size).to_batches()
        offset += size


def slice_permutation(num_rows: int, seed: int, epoch: int, slice_id: int) -> np.ndarray:
    """The slice's seeded row order (:func:`compact_row_permutation`), built once per slice
    and epoch: readers fetch one slice in several ranges (read-only; ~4 bytes a row)."""
    with _PERMUTATION_LOCK:  # readers of one slice at once build its order once
        return _cached_permutation(num_rows, seed, epoch, slice_id)


@functools.lru_cache(maxsize=4)
def _cached_permutation(num_rows: int, seed: int, epoch: int, slice_id: int) -> np.ndarray:
    perm = compact_row_permutation(num_rows, seed=seed, epoch=epoch, slice_id=slice_id)
    perm.setflags(write=False)
    return perm


def sequential_rows(
    table: pa.Table, claims: TicketClaims, *, chunking: Chunking, batch_rows: int
) -> pa.Table | Iterator[pa.RecordBatch] | None:
    """The rows ``claims`` names of the whole slice ``table`` when they are read as runs of
    contiguous rows (table order, or a MIX block stream); None for a slice-local shuffle.

    Table order is a zero-copy table already cut on the consumer's grid; a MIX range a lazy
    iterator of gathered batches. Raises FeederError for a range outside the slice or an
    unknown column.
    """
    check_range(claims.slice_id, table.num_rows, claims.start, claims.stop)
    projected = select(table, claims.columns)
    rows = claims.stop - claims.start
    if claims.shuffle is Shuffle.OFF:
        part = projected.slice(claims.start, rows)
        batches = list(cut(part, chunking.sizes(rows, batch_rows)))
        return pa.Table.from_batches(batches, schema=projected.schema)
    if claims.shuffle is Shuffle.MIX:
        return read_block_stream(
            projected,
            slice_id=claims.slice_id,
            start=claims.start,
            stop=claims.stop,
            block_rows=claims.block_rows,
            seed=claims.seed,
            epoch=claims.epoch,
            sizes=chunking.sizes(rows, batch_rows),
        )
    return None


def ticket_rows(
    table: pa.Table, claims: TicketClaims, *, chunking: Chunking, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Yield the rows ``claims`` names of the whole slice ``table``, for every shuffle.

    A slice-local shuffle is gathered with Arrow ``take`` in chunks of at most
    :data:`DEFAULT_TAKE_ROWS` rows on the consumer's grid (the data node gathers the same
    rows faster from its row copy). Raises FeederError as :func:`sequential_rows`.
    """
    rows = sequential_rows(table, claims, chunking=chunking, batch_rows=batch_rows)
    if isinstance(rows, pa.Table):
        yield from rows.to_batches()
        return
    if rows is not None:
        yield from rows
        return
    perm = slice_permutation(table.num_rows, claims.seed, claims.epoch, claims.slice_id)
    projected = select(table, claims.columns)
    lo = claims.start
    size_cap = min(batch_rows, DEFAULT_TAKE_ROWS)
    for size in chunking.sizes(claims.stop - claims.start, size_cap):
        yield from projected.take(pa.array(perm[lo : lo + size])).to_batches()
        lo += size
