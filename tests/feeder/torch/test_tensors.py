"""Arrow → torch conversion: dtype/shape matrix, zero-copy, nulls, lists, strings."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import feeder.torch.tensors as tensors_module
from feeder.torch.tensors import (
    ListPolicy,
    NullPolicy,
    StringPolicy,
    TensorOptions,
    batch_to_tensors,
    options_from,
    split_to_tensors,
)
from jobs.errors import FeederError, SpecError

MATRIX = [
    (pa.int8(), [1, -2, 3], torch.int8),
    (pa.int16(), [1, -2, 3], torch.int16),
    (pa.int32(), [1, -2, 3], torch.int32),
    (pa.int64(), [1, -2, 3], torch.int64),
    (pa.uint8(), [1, 2, 255], torch.uint8),
    (pa.uint16(), [1, 2, 3], torch.uint16),
    (pa.uint32(), [1, 2, 3], torch.uint32),
    (pa.uint64(), [1, 2, 3], torch.uint64),
    (pa.float16(), [np.float16(1.5), np.float16(-2), np.float16(0)], torch.float16),
    (pa.float32(), [1.5, -2.0, 0.0], torch.float32),
    (pa.float64(), [1.5, -2.0, 0.0], torch.float64),
    (pa.bool_(), [True, False, True], torch.bool),
]


@pytest.mark.parametrize(("arrow_type", "values", "dtype"), MATRIX, ids=lambda x: str(x))
def test_scalar_types_map_to_the_matching_dtype(arrow_type, values, dtype):
    batch = pa.record_batch({"x": pa.array(values, type=arrow_type)})
    out = batch_to_tensors(batch)["x"]
    assert out.dtype == dtype
    assert out.shape == (3,)
    expected = pa.array(values, type=arrow_type).to_pylist()
    assert [v.item() if dtype != torch.float16 else float(v) for v in out] == expected


def test_numeric_columns_without_nulls_are_zero_copy():
    arr = pa.array(np.arange(100, dtype=np.float32))
    batch = pa.record_batch({"x": arr}).slice(10, 20)
    out = batch_to_tensors(batch)["x"]
    assert out.tolist() == list(range(10, 30))
    assert out.data_ptr() == arr.buffers()[1].address + 10 * 4


def test_temporal_types_become_integers_in_their_unit():
    ts = pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)], type=pa.timestamp("us"))
    tz = pa.array([0, 1_000], type=pa.timestamp("ms", tz="UTC"))
    d32 = pa.array([dt.date(1970, 1, 2), dt.date(1970, 1, 11)], type=pa.date32())
    dur = pa.array([5, 7], type=pa.duration("s"))
    out = batch_to_tensors(pa.record_batch({"ts": ts, "tz": tz, "d": d32, "dur": dur}))
    assert out["ts"].dtype == torch.int64
    assert out["ts"][1] - out["ts"][0] == 86_400_000_000
    assert out["tz"].tolist() == [0, 1_000]
    assert out["d"].dtype == torch.int32 and out["d"].tolist() == [1, 10]
    assert out["dur"].tolist() == [5, 7]


def test_fixed_size_lists_become_nd_tensors_zero_copy():
    inner = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(24, dtype=np.float32)), 4)
    nested = pa.FixedSizeListArray.from_arrays(inner, 3)  # 2 rows x 3 x 4
    flat = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(4, dtype=np.int64)), 2)
    out = batch_to_tensors(pa.record_batch({"img": nested, "pair": flat}))
    assert out["img"].shape == (2, 3, 4) and out["img"].dtype == torch.float32
    assert out["img"][1, 2, 3].item() == 23
    assert out["pair"].tolist() == [[0, 1], [2, 3]]
    assert out["pair"].data_ptr() == flat.values.buffers()[1].address


def test_fixed_size_list_slice_keeps_offset():
    flat = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.int32)), 3)
    out = batch_to_tensors(pa.record_batch({"v": flat}).slice(2, 2))["v"]
    assert out.tolist() == [[6, 7, 8], [9, 10, 11]]


def test_fixed_shape_tensor_extension_keeps_its_shape():
    tensor_type = pa.fixed_shape_tensor(pa.float64(), (2, 3))
    data = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    arr = pa.FixedShapeTensorArray.from_numpy_ndarray(data)
    assert arr.type == tensor_type
    out = batch_to_tensors(pa.record_batch({"t": arr}))["t"]
    assert out.shape == (4, 2, 3)
    assert torch.equal(out, torch.from_numpy(data))


def test_fixed_shape_tensor_with_permutation_matches_numpy():
    tensor_type = pa.fixed_shape_tensor(pa.int32(), (2, 3), permutation=[1, 0])
    storage = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.int32)), 6)
    arr = pa.ExtensionArray.from_storage(tensor_type, storage)
    out = batch_to_tensors(pa.record_batch({"t": arr}))["t"]
    assert torch.equal(out, torch.from_numpy(np.array(arr.to_numpy_ndarray())))


def test_variable_lists_pad_with_lengths_by_default():
    arr = pa.array([[1, 2, 3], [], [4]], type=pa.list_(pa.int64()))
    out = batch_to_tensors(pa.record_batch({"seq": arr}))
    assert out["seq"].tolist() == [[1, 2, 3], [0, 0, 0], [4, 0, 0]]
    assert out["seq_lengths"].tolist() == [3, 0, 1]


def test_variable_lists_pad_value_and_slices():
    arr = pa.array([[9], [1, 2], [3, 4, 5]], type=pa.large_list(pa.float32()))
    out = batch_to_tensors(pa.record_batch({"s": arr}).slice(1), TensorOptions(pad_value=-1))
    assert out["s"].tolist() == [[1, 2, -1], [3, 4, 5]]
    assert out["s_lengths"].tolist() == [2, 3]


def test_variable_lists_as_nested_tensors():
    arr = pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32()))
    out = batch_to_tensors(pa.record_batch({"s": arr}), TensorOptions(lists=ListPolicy.NESTED))
    assert out["s"].is_nested
    assert [t.tolist() for t in out["s"].unbind()] == [[1.0, 2.0], [3.0]]
    assert "s_lengths" not in out


def test_lengths_key_collision_is_an_error():
    batch = pa.record_batch({"s": pa.array([[1]]), "s_lengths": pa.array([1])})
    with pytest.raises(FeederError, match="collides"):
        batch_to_tensors(batch)


def test_strings_are_lists_by_default_or_dropped():
    batch = pa.record_batch(
        {
            "name": pa.array(["a", None, "c"]),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
            "x": pa.array([1, 2, 3]),
        }
    )
    out = batch_to_tensors(batch)
    assert out["name"] == ["a", None, "c"]
    assert out["cat"] == ["x", "y", "x"]
    dropped = batch_to_tensors(batch, TensorOptions(strings=StringPolicy.DROP))
    assert set(dropped) == {"x"}


@pytest.mark.parametrize(
    "arr",
    [
        pa.array([1, None, 3], type=pa.int32()),
        pa.array([1.0, None], type=pa.float64()),
        pa.array([True, None]),
        pa.array([[1, 2], None], type=pa.list_(pa.int64(), 2)),
        pa.array([[1], None], type=pa.list_(pa.int64())),
    ],
    ids=["int", "float", "bool", "fixed_list", "var_list"],
)
def test_nulls_are_a_clear_error_by_default(arr):
    with pytest.raises(FeederError, match=r"column 'c' has 1 null.*nulls='fill'"):
        batch_to_tensors(pa.record_batch({"c": arr}))


def test_nulls_fill_option():
    batch = pa.record_batch(
        {
            "i": pa.array([1, None, 3], type=pa.int32()),
            "f": pa.array([None, 2.5, None]),
            "b": pa.array([True, None, False]),
            "fl": pa.array([[1, 2], None, [None, 6]], type=pa.list_(pa.int64(), 2)),
            "vl": pa.array([[1], None, [2, 3]], type=pa.list_(pa.int64())),
        }
    )
    out = batch_to_tensors(batch, TensorOptions(nulls=NullPolicy.FILL, fill_value=-1))
    assert out["i"].tolist() == [1, -1, 3]
    assert out["f"].tolist() == [-1.0, 2.5, -1.0]
    assert out["b"].tolist() == [True, False, False]
    assert out["fl"].tolist() == [[1, 2], [-1, -1], [-1, 6]]
    assert out["vl_lengths"].tolist() == [1, 0, 2]


def test_unsupported_types_are_named_in_the_error():
    batch = pa.record_batch({"s": pa.array([{"a": 1}])})
    with pytest.raises(FeederError, match="'s'"):
        batch_to_tensors(batch)


def test_empty_batch_keeps_dtypes():
    batch = pa.record_batch({"x": pa.array([], type=pa.float32()), "b": pa.array([], pa.bool_())})
    out = batch_to_tensors(batch)
    assert out["x"].shape == (0,) and out["x"].dtype == torch.float32
    assert out["b"].dtype == torch.bool


def test_options_are_validated_at_construction():
    with pytest.raises(SpecError, match="nulls: 'zero' is not one of 'error', 'fill'"):
        TensorOptions(nulls="zero")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="device"):
        TensorOptions(device="nodevice")
    with pytest.raises(SpecError, match="unknown tensor option"):
        options_from({"nul": "fill"})
    assert options_from({"lists": "nested"}).lists is ListPolicy.NESTED


def test_pin_memory_is_skipped_without_an_accelerator_and_asked_of_torch_with_one(monkeypatch):
    """Without CUDA (as here and in CI) pinning is skipped and the tensor stays usable on
    the CPU. That a pinned copy is asked for when an accelerator is present is checked by
    reporting one (``_can_pin``, the only stand-in: this machine has no accelerator):
    the batch then reaches torch's real ``pin_memory``, which fails here for want of a
    device. Whether the copy comes back pinned can only be seen on a machine with CUDA."""
    batch = pa.record_batch({"x": pa.array([1, 2])})
    out = batch_to_tensors(batch, TensorOptions(device="cpu", pin_memory=True))
    assert out["x"].device == torch.device("cpu")
    assert out["x"].tolist() == [1, 2]
    assert out["x"].is_pinned() == torch.cuda.is_available()
    unpinned = batch_to_tensors(batch, TensorOptions(device="cpu", pin_memory=False))
    assert not unpinned["x"].is_pinned()
    if not torch.cuda.is_available():
        monkeypatch.setattr(tensors_module, "_can_pin", lambda: True)
        with pytest.raises(RuntimeError, match=r"(?i)accelerator|cuda"):
            batch_to_tensors(batch, TensorOptions(device="cpu", pin_memory=True))
        assert not batch_to_tensors(batch, TensorOptions(pin_memory=False))["x"].is_pinned()


@settings(deadline=None)
@given(st.lists(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6), max_size=30))
def test_padding_roundtrips_any_lists(rows):
    arr = pa.array(rows, type=pa.list_(pa.int32()))
    out = batch_to_tensors(pa.record_batch({"s": arr}))
    lengths = out["s_lengths"].tolist()
    assert lengths == [len(r) for r in rows]
    assert [out["s"][i, :n].tolist() for i, n in enumerate(lengths)] == rows


def _mixed_batch(rows: int) -> pa.RecordBatch:
    """Plain numbers, numbers with nulls, bools, timestamps, strings, lists, fixed-size lists."""
    ids = np.arange(rows, dtype=np.int64)
    return pa.record_batch(
        {
            "id": ids,
            "x": (ids * 0.5).astype(np.float32),
            "maybe": pa.array([None if i % 7 == 3 else i for i in range(rows)], type=pa.int32()),
            "flag": ids % 2 == 0,
            "ts": pa.array(ids, type=pa.timestamp("us")),
            "name": [f"n{i}" for i in range(rows)],
            "vec": pa.array([[i] * (i % 3) for i in range(rows)], type=pa.list_(pa.int64())),
            "pair": pa.array([[i, -i] for i in range(rows)], type=pa.list_(pa.int16(), 2)),
        }
    )


def _same_batches(got, expected) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(e)  # same keys, same order
        for key in e:
            if isinstance(e[key], torch.Tensor):
                assert g[key].dtype == e[key].dtype and torch.equal(g[key], e[key]), key
            else:
                assert g[key] == e[key], key


@settings(deadline=None)
@given(st.integers(0, 40), st.integers(1, 9), st.integers(0, 6), st.booleans())
def test_split_to_tensors_equals_converting_each_slice(rows, size, offset, plain_only):
    batch = _mixed_batch(rows + offset)
    if plain_only:
        batch = batch.select(["id", "x"])
    count = rows // size
    options = TensorOptions(nulls="fill", fill_value=-1)
    expected = [
        batch_to_tensors(batch.slice(offset + i * size, size), options) for i in range(count)
    ]
    _same_batches(
        split_to_tensors(batch, offset=offset, count=count, size=size, options=options), expected
    )


def test_split_to_tensors_gives_zero_copy_views():
    arr = pa.array(np.arange(100, dtype=np.int64))
    pieces = split_to_tensors(pa.record_batch({"x": arr}), offset=10, count=3, size=25)
    base = arr.buffers()[1].address
    assert [p["x"].data_ptr() for p in pieces] == [base + (10 + i * 25) * 8 for i in range(3)]
    assert [p["x"].tolist() for p in pieces] == [
        list(range(10 + i * 25, 35 + i * 25)) for i in range(3)
    ]


def test_split_to_tensors_raises_like_batch_to_tensors_and_checks_the_range():
    batch = _mixed_batch(20).select(["id", "maybe"])
    with pytest.raises(FeederError, match=r"column 'maybe' has .* null"):
        split_to_tensors(batch, offset=0, count=2, size=10)
    with pytest.raises(SpecError, match="do not fit"):
        split_to_tensors(batch, offset=5, count=2, size=10)
