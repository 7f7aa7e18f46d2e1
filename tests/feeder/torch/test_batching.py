"""Re-cutting record batches into exact batches: as Arrow, and as grouped tensor batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.torch.batching import rebatch, tensor_batches
from feeder.torch.tensors import TensorOptions, batch_to_tensors
from jobs.errors import SpecError


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for n in sizes:
        out.append(pa.record_batch({"id": pa.array(range(start, start + n), type=pa.int64())}))
        start += n
    return out


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 50), max_size=20),
    st.integers(1, 40),
    st.booleans(),
)
def test_rebatch_keeps_order_and_cuts_exact_batches(sizes, batch_size, drop_last):
    total = sum(sizes)
    out = list(rebatch(_batches(sizes), batch_size, drop_last=drop_last))
    ids = [i for b in out for i in b.column("id").to_pylist()]
    kept = total - total % batch_size if drop_last else total
    assert ids == list(range(kept))
    assert all(b.num_rows == batch_size for b in out[:-1])
    if out:
        assert 0 < out[-1].num_rows <= batch_size
        assert not drop_last or out[-1].num_rows == batch_size


def test_rebatch_slices_without_copy_when_a_batch_fits():
    (source,) = _batches([100])
    out = list(rebatch([source], 25, drop_last=True))
    base = source.column(0).buffers()[1].address
    assert [b.column(0).buffers()[1].address + b.column(0).offset * 8 for b in out] == [
        base + i * 25 * 8 for i in range(4)
    ]


def _with_nulls(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Add a float column with a null every 5th row, and a string column."""
    out = []
    for b in batches:
        ids = b.column("id").to_pylist()
        maybe = pa.array([None if i % 5 == 4 else i / 2 for i in ids], type=pa.float64())
        out.append(
            pa.record_batch({"id": b.column("id"), "maybe": maybe, "name": [str(i) for i in ids]})
        )
    return out


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 50), max_size=20),
    st.integers(1, 40),
    st.booleans(),
    st.booleans(),
)
def test_tensor_batches_equal_rebatching_then_converting(sizes, batch_size, drop_last, nulls):
    batches = _with_nulls(_batches(sizes)) if nulls else _batches(sizes)
    options = TensorOptions(nulls="fill", fill_value=-1)
    groups = list(tensor_batches(batches, batch_size, drop_last=drop_last, options=options))
    got = [pair for group in groups for pair in group]
    expected = [
        (b.num_rows, batch_to_tensors(b, options))
        for b in rebatch(batches, batch_size, drop_last=drop_last)
    ]
    assert all(groups), "no empty group is handed over"
    assert [rows for rows, _ in got] == [rows for rows, _ in expected]
    for (_, g), (_, e) in zip(got, expected, strict=True):
        assert list(g) == list(e)
        assert torch.equal(g["id"], e["id"])
        if nulls:
            assert torch.equal(g["maybe"], e["maybe"]) and g["name"] == e["name"]


def test_tensor_batches_group_by_incoming_batch_with_views():
    source = pa.record_batch({"x": np.arange(100, dtype=np.float64)})
    tail = pa.record_batch({"x": np.arange(100, 130, dtype=np.float64)})
    groups = list(tensor_batches([source, tail], 25, drop_last=False))
    assert [[rows for rows, _ in g] for g in groups] == [[25, 25, 25, 25], [25], [5]]
    base = source.column(0).buffers()[1].address
    assert [b["x"].data_ptr() for _, b in groups[0]] == [base + i * 25 * 8 for i in range(4)]
    assert torch.equal(groups[2][0][1]["x"], torch.arange(125, 130, dtype=torch.float64))


def test_tensor_batches_reject_a_bad_batch_size():
    with pytest.raises(SpecError, match="batch_size"):
        list(tensor_batches(_batches([3]), 0, drop_last=True))
