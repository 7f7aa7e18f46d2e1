"""The consumer's half of the MIX shuffle: permute one window's rows (PROTOCOL.md).

A MIX window arrives as one piece per slice (each read from a data node with
failover, like any slice range); :func:`mix_window` concatenates the pieces in
slice order and applies the window's seeded permutation, keeping the output
rows ``[keep_start, keep_stop)`` the consumer delivers. Fixed-width columns
without nulls are permuted with ``numpy.take`` (one random read per row and
column, inside a buffer of ``window_rows`` rows); other columns with Arrow
``take``. Pure pyarrow and numpy: no torch, no pyspark.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from feeder.protocol.mix import window_permutation
from jobs.errors import FeederError


def _item(width: int) -> np.dtype:
    """An item type of ``width`` bytes: unsigned integers where numpy has one (fast take)."""
    return np.dtype({1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(width, f"V{width}"))


def _permute_column(chunks: Sequence[pa.Array], kind: pa.DataType, idx: np.ndarray) -> pa.Array:
    plain = (
        pa.types.is_primitive(kind)
        and kind.bit_width % 8 == 0
        and not any(c.null_count for c in chunks)
    )
    if not plain:
        return pa.concat_arrays(list(chunks)).take(pa.array(idx))
    item = _item(kind.bit_width // 8)
    parts = [
        np.frombuffer(c.buffers()[1], dtype=item, count=c.offset + len(c))[c.offset :]
        for c in chunks
    ]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
    out = np.empty(len(idx), dtype=item)
    np.take(values, idx, out=out, mode="clip")  # "clip": no buffered copy of ``out``
    return pa.Array.from_buffers(kind, len(out), [None, pa.py_buffer(out)])


def mix_window(
    batches: Sequence[pa.RecordBatch],
    schema: pa.Schema,
    *,
    rows: int,
    keep_start: int,
    keep_stop: int,
    seed: int,
    epoch: int,
    window: int,
) -> pa.RecordBatch:
    """Return output rows ``[keep_start, keep_stop)`` of window ``window`` whose pieces,
    concatenated in slice order, are ``batches`` (``rows`` rows in all).

    Raises FeederError if the pieces do not hold ``rows`` rows.
    """
    got = sum(b.num_rows for b in batches)
    if got != rows:
        raise FeederError(f"window {window}: pieces hold {got} rows, the plan says {rows}")
    perm = window_permutation(rows, seed=seed, epoch=epoch, window=window)
    idx = perm[keep_start:keep_stop].astype(np.intp)
    arrays = [
        _permute_column([b.column(i) for b in batches], field.type, idx)
        for i, field in enumerate(schema)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: reads one signed slice range (with failover): ``read(ticket, locations)``
ReadRange = Callable[[str, list[str]], Iterator[pa.RecordBatch]]


def read_window(
    window: Mapping[str, Any],
    pieces: Sequence[tuple[str, list[str]]],
    *,
    seed: int,
    epoch: int,
    read: ReadRange,
) -> pa.RecordBatch | None:
    """Read every piece of one window read (``window`` as in PROTOCOL.md: ``window``,
    ``rows``, ``keep``) and return its kept rows, permuted; None if it keeps none."""
    batches = [batch for ticket, locations in pieces for batch in read(ticket, locations)]
    keep_start, keep_stop = (int(x) for x in window["keep"])
    if keep_stop <= keep_start or not batches:
        return None
    return mix_window(
        batches,
        batches[0].schema,
        rows=int(window["rows"]),
        keep_start=keep_start,
        keep_stop=keep_stop,
        seed=seed,
        epoch=epoch,
        window=int(window["window"]),
    )


def read_static_windows(
    endpoints: Sequence[flight.FlightEndpoint], *, seed: int, epoch: int, read: ReadRange
) -> Iterator[pa.RecordBatch]:
    """Yield a static-mode MIX share: endpoints grouped by the window read named in their
    ``app_metadata``, each group read and permuted in order."""
    group: list[tuple[str, list[str]]] = []
    meta: dict[str, Any] | None = None
    for endpoint in [*endpoints, None]:
        current = json.loads(endpoint.app_metadata) if endpoint is not None else None
        if meta is not None and (current is None or current["read"] != meta["read"]):
            out = read_window(meta, group, seed=seed, epoch=epoch, read=read)
            if out is not None:
                yield out
            group = []
        if endpoint is None or current is None:
            break
        meta = current
        group.append(
            (
                endpoint.ticket.ticket.decode("ascii"),
                [loc.uri.decode() for loc in endpoint.locations],
            )
        )


def is_mixed(endpoints: Sequence[flight.FlightEndpoint]) -> bool:
    """Whether a static share is MIX window reads (endpoints carry window metadata)."""
    return bool(endpoints) and bool(endpoints[0].app_metadata)
