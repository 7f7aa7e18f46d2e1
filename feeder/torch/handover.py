"""Many batches in one shared-memory segment: a DataLoader worker's hand-over, amortised.

A DataLoader worker sends every item it yields to the main process; each hand-over
costs the main process a shared-memory handle received over a socket and mapped
(~1–2 ms on a loaded 2-core machine, whatever the batch's size), which caps a
loader at a few hundred items a second. :func:`pack` copies ``k`` consecutive
batches' dense tensors into ONE fresh shared segment; the worker yields the
:class:`BatchGroup`, the main process receives one handle for ``k`` batches and
:meth:`BatchGroup.batches` hands them out as views (no copy). ``pin_memory`` pins
the whole segment in one copy. :class:`feeder.torch.loader.FeederDataLoader` does
both ends. :func:`to_shared` is the one-batch case, which a plain DataLoader's
workers use: torch's pickler would otherwise move every zero-copy column's whole
storage (the incoming record batch's column) into a segment of its own.

A fresh segment per group (never a reused one) keeps the hand-over safe: the main
process may hold a batch as long as it likes, nothing writes to it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from feeder.torch.tensors import Batch

#: Byte alignment of each tensor inside a segment (cache line; any dtype).
ALIGN = 64


def _packable(value: object) -> bool:
    """A dense, CPU, unpinned tensor that is not already in shared memory."""
    return (
        isinstance(value, torch.Tensor)
        and value.layout is torch.strided
        and not value.is_nested
        and value.device.type == "cpu"
        and not value.is_pinned()
        and not value.is_shared()
    )


def _strides(shape: tuple[int, ...]) -> list[int]:
    """The strides of a contiguous tensor of ``shape``."""
    out: list[int] = []
    step = 1
    for size in reversed(shape):
        out.append(step)
        step *= max(size, 1)
    return out[::-1]


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
        out: list[dict[str, Any]] = [dict(r) for r in self.rest]  # keeps each key order
        for slot in self.slots:
            out[slot.batch][slot.key] = self._view(slot)
        yield from out

    def _view(self, slot: _Slot) -> torch.Tensor:
        view = torch.empty(0, dtype=slot.dtype, device=self.storage.device)
        offset = slot.offset // view.element_size()
        view.set_(self.storage.untyped_storage(), offset, slot.shape, _strides(slot.shape))
        return view

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
        kept: dict[str, Any] = dict(batch)
        for key, value in batch.items():
            if _packable(value):
                end = -(-end // ALIGN) * ALIGN
                slots.append(_Slot(index, key, value.dtype, tuple(value.shape), end))
                kept[key] = None  # its view, once the group exists
                end += value.numel() * value.element_size()
        rest.append(kept)
    storage = torch.empty(0, dtype=torch.uint8)
    storage.set_(torch.UntypedStorage._new_shared(max(end, 1)))
    group = BatchGroup(storage, slots, rest)
    for slot in slots:
        group._view(slot).copy_(batches[slot.batch][slot.key])
    return group


def to_shared(batch: Batch) -> Batch:
    """Return ``batch`` with its dense CPU tensors copied into one fresh shared-memory
    segment (a DataLoader worker's one-batch hand-over); other values (string lists,
    nested tensors, tensors already shared) are kept. A batch with nothing to pack is
    returned as it is."""
    if not any(_packable(value) for value in batch.values()):
        return batch
    return next(pack([batch]).batches())


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
