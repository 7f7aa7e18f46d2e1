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

Where it can, a worker writes the next group into a segment of its own that the main
process has released (:class:`SharedGroup`, :mod:`feeder.torch.shm_ring`): released
means no tensor viewing it is left in the main process, so a batch held as long as
the user likes is never written to again. Else (every segment held, no ``/dev/shm``)
a fresh segment per group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from feeder.torch import shm_ring
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


def _layout(batches: Sequence[Batch]) -> tuple[list[_Slot], list[dict[str, Any]], int]:
    """Where each packable tensor of ``batches`` goes in a group's storage; each batch's
    other values; the storage's size in bytes."""
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
    return slots, rest, max(end, 1)


def _fill(group: BatchGroup, batches: Sequence[Batch]) -> None:
    for slot in group.slots:
        group._view(slot).copy_(batches[slot.batch][slot.key])


def pack(batches: Sequence[Batch]) -> BatchGroup:
    """Copy ``batches``' dense CPU tensors into one fresh shared-memory segment.

    Values that cannot be packed (string lists, nested tensors, tensors already
    shared or pinned) stay as they are, and are sent as torch sends them.

    Args:
        batches: converted batches (``dict`` of tensors and lists).

    Returns:
        The group; its storage is in shared memory (``is_shared()``).
    """
    slots, rest, end = _layout(batches)
    storage = torch.empty(0, dtype=torch.uint8)
    storage.set_(torch.UntypedStorage._new_shared(end))
    group = BatchGroup(storage, slots, rest)
    _fill(group, batches)
    return group


class SharedGroup:
    """A group written into a worker's reused segment (:mod:`feeder.torch.shm_ring`):
    what crosses to the main process is where it lies, not a file descriptor.
    :meth:`attach` (the main process) gives the :class:`BatchGroup`."""

    def __init__(
        self, ref: shm_ring.SegmentRef, size: int, slots: Sequence[_Slot], rest: list[Any]
    ) -> None:
        self.ref = ref
        self.size = size
        self.slots = tuple(slots)
        self.rest = rest
        self._received = False  # unpickled in the main process and not attached yet
        self._group: BatchGroup | None = None
        self._unmapped: OSError | None = None

    def __len__(self) -> int:
        return len(self.rest)

    def __getstate__(self) -> dict[str, Any]:
        local = ("_received", "_group", "_unmapped")
        return {k: v for k, v in self.__dict__.items() if k not in local}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._group = None
        self._unmapped = None
        try:
            shm_ring.receive(self.ref)  # now: the worker may exit before it is yielded
        except OSError as error:  # raised where the batches are asked for
            self._unmapped = error
        self._received = self._unmapped is None

    def __del__(self) -> None:
        # a group the main process received and dropped unread (a DataLoader iterator
        # closed with groups in flight): its segment goes back to the worker
        if getattr(self, "_received", False):
            shm_ring.release(self.ref)

    def attach(self) -> BatchGroup:
        """The group, its tensors views of the mapped segment (made once); the segment is
        released to the worker once neither this object nor any of those tensors (or
        views of them) is left."""
        if self._unmapped is not None:
            raise RuntimeError(
                f"cannot read a batch group from DataLoader worker segment {self.ref.path}: "
                f"{self._unmapped}. The worker that wrote it was killed before the main "
                "process received it (see the worker's exit status), or the file is not "
                "this user's private segment"
            ) from self._unmapped
        if self._group is None:
            storage = torch.from_numpy(shm_ring.attach(self.ref, self.size))
            self._received = False  # released by the storage from now on
            self._group = BatchGroup(storage, self.slots, self.rest)
        return self._group

    def batches(self) -> Iterator[Batch]:
        """:meth:`attach`, then the group's batches."""
        return self.attach().batches()

    def pin_memory(self, device: Any = None) -> BatchGroup:
        """The group copied into pinned memory (the segment is released at once)."""
        return self.attach().pin_memory(device)


def pack_reused(batches: Sequence[Batch], ring: shm_ring.Ring) -> SharedGroup | None:
    """Copy ``batches``' dense CPU tensors into a released segment of ``ring`` (None:
    every segment is still held by the main process)."""
    slots, rest, end = _layout(batches)
    taken = ring.take(end)
    if taken is None:
        return None
    ref, array = taken
    _fill(BatchGroup(torch.from_numpy(array), slots, rest), batches)
    return SharedGroup(ref, end, slots, rest)


def to_shared(batch: Batch) -> Batch:
    """Return ``batch`` with its dense CPU tensors copied into one fresh shared-memory
    segment (a DataLoader worker's one-batch hand-over); other values (string lists,
    nested tensors, tensors already shared) are kept. A batch with nothing to pack is
    returned as it is."""
    if not any(_packable(value) for value in batch.values()):
        return batch
    return next(pack([batch]).batches())


def grouped(batches: Iterator[Batch], size: int) -> Iterator[BatchGroup | SharedGroup]:
    """Yield ``batches`` packed ``size`` at a time (the last group may be smaller): a
    DataLoader worker's side of the hand-over, in the worker's reused segments where
    it can (:mod:`feeder.torch.shm_ring`), else in a fresh segment per group."""
    ring = shm_ring.worker_ring() if shm_ring.available() else None

    def packed(group: list[Batch]) -> BatchGroup | SharedGroup:
        shared = pack_reused(group, ring) if ring is not None else None
        return shared if shared is not None else pack(group)

    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield packed(group)
            group = []
    if group:
        yield packed(group)
