"""pack / BatchGroup: many batches in one shared-memory segment, handed out as views."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pyarrow as pa
import torch
import torch.multiprocessing  # registers the tensor reductions with ForkingPickler
from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory

from feeder.torch.handover import BatchGroup, pack
from feeder.torch.tensors import batch_to_tensors


def _batch(start: int, n: int) -> dict:
    ids = np.arange(start, start + n, dtype=np.int64)
    return batch_to_tensors(
        pa.record_batch(
            {
                "id": pa.array(ids),
                "y": pa.array(ids.astype(np.float32) / 3),
                "flag": pa.array(ids % 2 == 0),
                "vec": pa.array([[float(i), 1.0] for i in ids], type=pa.list_(pa.float64(), 2)),
                "name": pa.array([f"n{i}" for i in ids], type=pa.string()),
            }
        )
    )


def test_batches_come_back_equal_in_order_as_views_of_one_shared_segment():
    batches = [_batch(0, 5), _batch(5, 3), _batch(8, 0), _batch(8, 7)]
    group = pack(batches)
    assert len(group) == 4 and group.storage.is_shared()
    got = list(group.batches())
    assert len(got) == 4
    for want, have in zip(batches, got, strict=True):
        assert list(have) == list(want)  # same keys, same order
        assert have["name"] == want["name"]
        for key in ("id", "y", "flag", "vec"):
            assert have[key].dtype == want[key].dtype and have[key].shape == want[key].shape
            assert torch.equal(have[key], want[key])
    pointers = {b[k].untyped_storage().data_ptr() for b in got for k in ("id", "y", "vec")}
    assert pointers == {group.storage.untyped_storage().data_ptr()}


def test_the_group_crosses_processes_as_one_handle_and_the_segment_is_fresh():
    batches = [_batch(0, 4), _batch(4, 4)]
    first, second = pack(batches), pack(batches)
    assert first.storage.data_ptr() != second.storage.data_ptr()  # never reused
    wire = ForkingPickler.dumps(first)
    back = pickle.loads(wire)
    assert isinstance(back, BatchGroup)
    for want, have in zip(batches, back.batches(), strict=True):
        assert torch.equal(have["id"], want["id"]) and have["name"] == want["name"]
    # the tensors' bytes are in the segment, not in the pickle
    assert len(wire) < sum(b["id"].numel() * 8 for b in batches) + 2_000


def pins_like_torch(group: object) -> BatchGroup | None:
    """Hand ``group`` to torch's ``pin_memory`` (the DataLoader's pin thread): the pinned
    group with an accelerator; on a CPU-only build check that torch refuses, as it does
    for any tensor, and return None."""
    if torch.accelerator.is_available():
        pinned = torch_pin_memory(group)
        assert isinstance(pinned, BatchGroup) and pinned.storage.is_pinned()
        assert torch.equal(next(pinned.batches())["id"], torch.arange(4))
        return pinned
    try:
        torch_pin_memory(group)
    except RuntimeError as exc:  # what torch says for any tensor without an accelerator
        assert "accelerator" in str(exc).lower() or "cuda" in str(exc).lower(), exc
    else:
        raise AssertionError("pinning without an accelerator should fail as torch's does")
    return None


def test_torchs_pin_memory_thread_calls_the_groups_pin_memory():
    """The DataLoader's pin thread (torch's ``pin_memory`` function) hands a BatchGroup to
    its ``pin_memory`` method; on a build with an accelerator the storage comes back
    pinned, on a CPU-only build torch refuses pinning, as it does for any tensor."""
    pins_like_torch(pack([_batch(0, 4)]))


def test_grouped_packs_in_order_and_keeps_a_short_last_group():
    from feeder.torch.handover import grouped

    batches = [_batch(i * 3, 3) for i in range(5)]
    groups = list(grouped(iter(batches), 2))
    assert [len(g) for g in groups] == [2, 2, 1]
    ids = [b["id"].tolist() for g in groups for b in g.batches()]
    assert ids == [b["id"].tolist() for b in batches]
