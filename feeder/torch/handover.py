"""Many batches in one shared-memory segment: a DataLoader worker's hand-over, amortised.

A DataLoader worker sends every item it yields to the main process; each hand-over
costs the main process a shared-memory handle received over a socket and mapped
(~1–2 ms on a loaded 2-core machine, whatever the batch's size), which caps a
loader at a few hundred items a second. :func:`pack` copies ``k`` consecutive
batches' dense tensors into ONE fresh shared segment; the worker yields the
:class:`BatchGroup`, the main process receives one handle for ``k`` batches and
:meth:`BatchGroup.batches` hands them out as views (no copy). ``pin_memory`` pins
the whole segment in one copy. :class:`feeder.torch.loader.FeederDataLoader` does
both ends.

A fresh segment per group (never a reused one) keeps the hand-over safe: the main
process may hold a batch as long as it likes, nothing writes to it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from feeder.torch.shared import ALIGN, packable, strides
from feeder.torch.tensors import Batch


@dataclass(frozen=True)
class _Slot:
    """Where one tensor of one batch lies in a group's segment."""

    batch: int
    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int


class BatchGroup:
    """``k`` batches whose dense tensors are views of one storage (shared or pinned).

    Args:
        storage: a flat ``uint8`` tensor holding every packed tensor.
        slots: where each packed tensor lies.
        rest: each batch with its values that were not packed (strings, nested tensors).
    """

    def __init__(
        self, storage: torch.Tensor, slots: Sequence[_Slot], rest: Sequence[dict[str, Any]]
    ) -> None:
        self.storage = storage
        self.slots = tuple(slots)
        self.rest = [dict(r) for r in rest]

    def __len__(self) -> int:
        return len(self.rest)

    def batches(self) -> Iterator[Batch]:
        """Yield the batches, in order; their tensors are views of the group's storage."""
        out: list[dict[str, Any]] = [dict(r) for r in self.rest]
        for slot in self.slots:
            view = torch.empty(0, dtype=slot.dtype, device=self.storage.device)
            element = view.element_size()
            view.set_(
                self.storage.untyped_storage(),
                slot.offset // element,
                slot.shape,
                strides(torch.Size(slot.shape)),
            )
            out[slot.batch][slot.key] = view
        for batch, rest in zip(out, self.rest, strict=True):
            yield {key: batch[key] for key in rest}  # the batch's own key order

    def pin_memory(self, device: Any = None) -> BatchGroup:
        """Return this group with its storage in pinned memory (one copy for every batch);
        called by the DataLoader's pin-memory thread."""
        pinned = self.storage.pin_memory() if device is None else self.storage.pin_memory(device)
        return BatchGroup(pinned, self.slots, self.rest)


def pack(batches: Sequence[Batch]) -> BatchGroup:
    """Copy ``batches``' dense CPU tensors into one fresh shared-memory segment.

    Values that cannot be packed (string lists, nested tensors, tensors already
    shared or pinned) stay as they are, and are sent as torch sends them.

    Args:
        batches: converted batches (``dict`` of tensors and lists).

    Returns:
        The group; its storage is in shared memory (``is_shared()``).
    """
    slots: list[_Slot] = []
    rest: list[dict[str, Any]] = []
    end = 0
    for index, batch in enumerate(batches):
        kept: dict[str, Any] = {}
        for key, value in batch.items():
            kept[key] = value
            if packable(value):
                end = -(-end // ALIGN) * ALIGN
                slots.append(_Slot(index, key, value.dtype, tuple(value.shape), end))
                kept[key] = None  # filled with its view by BatchGroup.batches
                end += value.numel() * value.element_size()
        rest.append(kept)
    storage = torch.empty(0, dtype=torch.uint8)
    storage.set_(torch.UntypedStorage._new_shared(max(end, 1)))
    group = BatchGroup(storage, slots, rest)
    views = group.batches()
    for batch, view in zip(batches, views, strict=True):
        for key, value in view.items():
            if torch.is_tensor(value) and value is not batch[key]:
                value.copy_(batch[key])
    return group


def grouped(batches: Iterator[Batch], size: int) -> Iterator[BatchGroup]:
    """Yield ``batches`` packed ``size`` at a time (the last group may be smaller): a
    DataLoader worker's side of the hand-over."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield pack(group)
            group = []
    if group:
        yield pack(group)
