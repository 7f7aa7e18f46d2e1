"""to_shared: a batch's tensors copied into one fresh shared-memory segment."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pyarrow as pa
import torch
import torch.multiprocessing  # registers the tensor reductions with ForkingPickler

from feeder.torch.handover import to_shared
from feeder.torch.tensors import batch_to_tensors


def test_values_dtypes_and_shapes_survive_and_every_tensor_is_shared():
    batch = pa.record_batch(
        {
            "id": pa.array(np.arange(5, dtype=np.int64)),
            "y": pa.array(np.arange(5, dtype=np.float32) / 3),
            "flag": pa.array([True, False, True, True, False]),
            "vec": pa.array([[1.0, 2.0]] * 5, type=pa.list_(pa.float64(), 2)),
            "name": pa.array(list("abcde")),
        }
    )
    views = batch_to_tensors(batch)
    assert not views["id"].is_shared()  # a zero-copy view of the Arrow buffer
    shared = to_shared(views)
    assert shared["name"] == list("abcde")
    for key in ("id", "y", "flag", "vec"):
        assert shared[key].is_shared() and shared[key].dtype == views[key].dtype
        assert torch.equal(shared[key], views[key])
    # one segment for the whole batch: one handle to pass, not one per column
    pointers = {shared[k].untyped_storage().data_ptr() for k in ("id", "y", "flag", "vec")}
    assert len(pointers) == 1


def test_a_fresh_segment_per_batch_so_a_held_batch_is_never_overwritten():
    first = to_shared({"a": torch.arange(4)})
    second = to_shared({"a": torch.arange(4) + 10})
    assert first["a"].untyped_storage().data_ptr() != second["a"].untyped_storage().data_ptr()
    assert first["a"].tolist() == [0, 1, 2, 3]


def test_the_pickler_passes_the_segment_without_moving_it():
    shared = to_shared({"a": torch.arange(1000), "b": torch.ones(3, 2)})
    before = shared["a"].untyped_storage().data_ptr()
    back = pickle.loads(ForkingPickler.dumps(shared))
    assert shared["a"].untyped_storage().data_ptr() == before  # not copied to a new segment
    assert torch.equal(back["a"], shared["a"]) and torch.equal(back["b"], shared["b"])


def test_nothing_to_pack_returns_the_batch():
    batch = {"name": ["x"], "e": torch.empty(0)}
    assert to_shared({"name": ["x"]}) == {"name": ["x"]}
    assert to_shared(batch)["e"].numel() == 0
