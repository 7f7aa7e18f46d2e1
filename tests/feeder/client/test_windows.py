"""A consumer permutes a MIX window's pieces into the window's order, every column type."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from feeder.client.windows import mix_window
from feeder.protocol.mix import window_permutation
from jobs.errors import FeederError


def _pieces(n: int) -> list[pa.RecordBatch]:
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
    cuts = [0, n // 5, n // 2, n]
    return [
        table.slice(a, b - a).combine_chunks().to_batches()[0] for a, b in itertools.pairwise(cuts)
    ]


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
    pieces = _pieces(rows)
    whole = pa.Table.from_batches(pieces)
    out = mix_window(
        pieces,
        whole.schema,
        rows=rows,
        keep_start=keep_start,
        keep_stop=keep_stop,
        seed=9,
        epoch=3,
        window=5,
    )
    perm = window_permutation(rows, seed=9, epoch=3, window=5)[keep_start:keep_stop]
    expected = whole.take(pa.array(perm.astype(np.int64))).combine_chunks()
    assert pa.Table.from_batches([out]).equals(expected)


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
