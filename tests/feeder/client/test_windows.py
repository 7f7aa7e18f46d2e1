"""A consumer permutes a MIX window's pieces into the window's order, every column type."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from feeder.client.windows import WindowScratch, mix_window
from feeder.protocol.mix import window_permutation
from jobs.errors import FeederError


def _pieces(n: int, cuts: list[int] | None = None) -> list[pa.RecordBatch]:
    ids = np.arange(n, dtype=np.int64)
    table = pa.table(
        {
            "id": ids,
            "y": ids.astype(np.float64) * 1.5,
            "s": pa.array([f"r{i}" for i in range(n)]),
            "maybe": pa.array([None if i % 4 == 0 else i for i in range(n)], pa.int16()),
            "flag": pa.array([i % 3 == 0 for i in range(n)]),
        }
    )
    cuts = [0, n // 5, n // 2, n] if cuts is None else [0, *cuts, n]
    return [
        pa.RecordBatch.from_arrays(
            [c.combine_chunks() for c in table.slice(a, b - a).columns], schema=table.schema
        )
        for a, b in itertools.pairwise(cuts)
    ]


def _check_order(
    pieces: list[pa.RecordBatch],
    keep: tuple[int, int],
    *,
    seed: int,
    epoch: int,
    window: int,
    scratch: WindowScratch | None = None,
) -> pa.RecordBatch:
    """Order ``pieces`` as window ``window`` and check the kept rows against
    ``window_permutation``; return the ordered batch."""
    whole = pa.Table.from_batches(pieces)
    rows = whole.num_rows
    out = mix_window(
        pieces,
        whole.schema,
        rows=rows,
        keep_start=keep[0],
        keep_stop=keep[1],
        seed=seed,
        epoch=epoch,
        window=window,
        scratch=scratch,
    )
    _check_rows(out, pieces, keep, seed=seed, epoch=epoch, window=window)
    return out


def _check_rows(
    out: pa.RecordBatch,
    pieces: list[pa.RecordBatch],
    keep: tuple[int, int],
    *,
    seed: int,
    epoch: int,
    window: int,
) -> None:
    whole = pa.Table.from_batches(pieces)
    perm = window_permutation(whole.num_rows, seed=seed, epoch=epoch, window=window)
    expected = whole.take(pa.array(perm[keep[0] : keep[1]].astype(np.int64))).combine_chunks()
    assert pa.Table.from_batches([out]).equals(expected)


@pytest.mark.parametrize(
    ("rows", "keep_start", "keep_stop"),
    [
        (1000, 0, 1000),
        (1000, 17, 999),
        (1000, 500, 500),
        (1000, 3, 5),  # inside one unit
        (1003, 0, 1003),  # 3 tail rows after the units
        (1003, 998, 1002),  # across the last unit and the tail
        (1003, 1001, 1003),  # tail rows only
        (5, 1, 4),  # no whole unit: tail rows only
    ],
)
def test_window_rows_come_out_in_the_window_permutation(rows, keep_start, keep_stop):
    _check_order(_pieces(rows), (keep_start, keep_stop), seed=9, epoch=3, window=5)


def test_a_window_missing_rows_is_an_error():
    pieces = _pieces(100)
    with pytest.raises(FeederError, match="window 0"):
        mix_window(
            pieces[:2],
            pieces[0].schema,
            rows=100,
            keep_start=0,
            keep_stop=100,
            seed=0,
            epoch=0,
            window=0,
        )


@pytest.mark.parametrize(
    "cuts",
    [
        [],  # one chunk
        [8, 16, 256],  # on unit boundaries
        [3, 5, 11, 12, 12, 13, 500, 997],  # inside units, tiny and empty chunks
        [1, 2, 3, 4, 5, 6, 7, 9],  # one unit across many chunks
    ],
)
@pytest.mark.parametrize(("keep_start", "keep_stop"), [(0, 1003), (9, 1001), (4, 12)])
def test_window_order_holds_wherever_the_chunks_are_cut(cuts, keep_start, keep_stop):
    _check_order(_pieces(1003, cuts), (keep_start, keep_stop), seed=4, epoch=1, window=2)


@pytest.mark.parametrize(("keep_start", "keep_stop"), [(0, 1003), (1001, 1003), (998, 1002)])
def test_windows_sharing_a_scratch_buffer_keep_their_own_rows(keep_start, keep_stop):
    scratch = WindowScratch()
    pieces = _pieces(1003, [3, 400, 700])
    keep = (keep_start, keep_stop)
    # each window overwrites the joined columns of the one before
    outs = [
        _check_order(pieces, keep, seed=1, epoch=0, window=w, scratch=scratch) for w in range(3)
    ]
    for window, out in enumerate(outs):  # still right once the buffer was reused
        _check_rows(out, pieces, keep, seed=1, epoch=0, window=window)
