"""Batches built in shared memory, for the hand-over from a DataLoader worker.

A DataLoader worker sends each batch to the main process through torch's
``ForkingPickler``, which moves every tensor's storage into shared memory before
sending its handle. Tensors that are zero-copy views of Arrow buffers are not in
shared memory, so that move is a copy — of each column's whole storage (a view's
storage is the incoming record batch's column, not the batch), one shared-memory
segment and one file descriptor per column. :func:`to_shared` instead copies a
batch's dense tensors once into ONE fresh shared-memory segment, laid out column
after column; the pickler then passes one handle per batch and copies nothing.

A fresh segment per batch (never a reused one) keeps the hand-over safe: the
main process may hold a batch as long as it likes, nothing writes to it again.
Used only in a DataLoader worker; the main process keeps its zero-copy views.
"""

from __future__ import annotations

import torch

from feeder.torch.tensors import Batch

#: Byte alignment of each tensor inside a batch's segment (cache line; any dtype).
ALIGN = 64


def packable(value: object) -> bool:
    """A dense, CPU, unpinned tensor that is not already in shared memory."""
    return (
        isinstance(value, torch.Tensor)
        and value.layout is torch.strided
        and not value.is_nested
        and value.device.type == "cpu"
        and not value.is_pinned()
        and not value.is_shared()
    )


def strides(shape: torch.Size) -> list[int]:
    """The strides of a contiguous tensor of ``shape``."""
    strides: list[int] = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return strides[::-1]


def to_shared(batch: Batch) -> Batch:
    """Return ``batch`` with its dense CPU tensors copied into one shared-memory segment.

    Tensors keep their dtype, shape and values (contiguous); other values (string
    lists, nested tensors, tensors already shared) are kept as they are.

    Args:
        batch: a converted batch (``dict`` of tensors and lists).

    Returns:
        A new dict; its packed tensors are views of one fresh shared storage
        (``tensor.is_shared()`` is True).
    """
    keys = [key for key, value in batch.items() if packable(value)]
    if not keys:
        return batch
    offsets: list[int] = []
    end = 0
    for key in keys:
        value = batch[key]
        end = -(-end // ALIGN) * ALIGN
        offsets.append(end)
        end += value.numel() * value.element_size()
    storage = torch.UntypedStorage._new_shared(max(end, 1))
    out = dict(batch)
    for key, offset in zip(keys, offsets, strict=True):
        value = batch[key]
        view = torch.empty(0, dtype=value.dtype)
        view.set_(storage, offset // value.element_size(), value.shape, strides(value.shape))
        view.copy_(value)
        out[key] = view
    return out
