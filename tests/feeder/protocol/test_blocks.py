"""A node serves any range of a slice's MIX block stream, every column type, in stream order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.blocks import gather_runs, read_block_stream
from feeder.protocol.mix import block_runs
from jobs.errors import FeederError


def _table(n: int) -> pa.Table:
    ids = np.arange(n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "x": ids.astype(np.float32) / 2,
            "s": pa.array([f"r{i}" for i in range(n)], pa.string()),
            "maybe": pa.array([None if i % 3 == 0 else i for i in range(n)], pa.int32()),
            "flag": pa.array([i % 2 == 0 for i in range(n)], pa.bool_()),
        }
    )


@given(st.integers(0, 300), st.integers(1, 40), st.integers(0, 2**32), st.data())
@settings(max_examples=60, deadline=None)
def test_any_range_of_the_block_stream_is_served_in_order(n, block, seed, data):
    table = _table(n).combine_chunks()
    start = data.draw(st.integers(0, n))
    stop = data.draw(st.integers(start, n))
    sizes = []
    left = stop - start
    while left > 0:
        sizes.append(min(left, data.draw(st.integers(1, 64))))
        left -= sizes[-1]
    batches = list(
        read_block_stream(
            table,
            slice_id=2,
            start=start,
            stop=stop,
            block_rows=block,
            seed=seed,
            epoch=1,
            sizes=sizes,
        )
    )
    got = pa.Table.from_batches(batches, schema=table.schema) if batches else table.slice(0, 0)
    rows = block_runs(n, start, stop, block_rows=block, seed=seed, epoch=1, slice_id=2).rows()
    assert got.equals(table.take(pa.array(rows, pa.int64())).combine_chunks())
    assert [b.num_rows for b in batches] == sizes


def test_a_block_number_outside_the_slice_is_an_error_not_a_clipped_read():
    """The gather takes blocks without numpy's bounds check (a buffered copy); its own
    check keeps a block past the slice an error rather than a silently repeated block."""
    table = _table(100).combine_chunks()
    runs = block_runs(100, 0, 80, block_rows=10, seed=1, epoch=0, slice_id=0)
    assert len(runs.blocks) > 0
    good = gather_runs(table, runs)
    assert good.column("id").to_pylist() == runs.rows().tolist()
    for bad in (10, -1):
        blocks = runs.blocks.copy()
        blocks[0] = bad
        with pytest.raises(FeederError, match="outside the slice's 10 whole blocks"):
            gather_runs(table, dataclasses.replace(runs, blocks=blocks))
