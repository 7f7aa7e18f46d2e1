"""Elastic resume: what an epoch still has to deliver after a shape stopped, and its new split.

Pure: nothing here touches sockets or disk. Positions are positions of the
epoch order ``[0, total)`` (any order: off, slice or MIX), so the result maps
onto slices (:func:`feeder.protocol.shuffle.position_ranges`) or MIX windows
(:func:`feeder.protocol.mix.consumer_reads`) alike.

In DDP every rank steps in lockstep, so every rank's DataLoader worker ``w``
has delivered the same number of rows ``delivered[w]`` of its piece: the old
shape (world size, workers, unit, drop_last) plus those counts name exactly
which positions were delivered. The remaining positions, in epoch order, are
then cut for the new shape as an epoch of their own: equal rows per rank
(padding by repeating them from their start unless ``drop_last``), whole
``unit``-row units per worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feeder.protocol.mix import consumer_spans
from feeder.protocol.shuffle import split_bounds
from jobs.errors import SpecError

Span = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class Progress:
    """How far the old shape got: its split and rows delivered per DataLoader worker.

    Attributes:
        world_size: ranks of the old shape.
        num_workers: DataLoader workers per rank of the old shape.
        unit: the old batch size (workers' pieces are whole units).
        drop_last: the old ``drop_last``.
        delivered: rows delivered by worker ``w`` of every rank, ``num_workers`` entries.

    Raises:
        SpecError: a field is invalid; the message names it (``resume_from.<field>``).
    """

    world_size: int
    num_workers: int
    unit: int
    drop_last: bool
    delivered: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("world_size", "num_workers", "unit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
                raise SpecError(f"resume_from.{name}: {value!r} must be an integer in [1, 2**31)")
        if not isinstance(self.drop_last, bool):
            raise SpecError(f"resume_from.drop_last: {self.drop_last!r} must be true or false")
        delivered = self.delivered
        if (
            not isinstance(delivered, list | tuple)
            or len(delivered) != self.num_workers
            or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**62 for c in delivered
            )
        ):
            raise SpecError(
                f"resume_from.delivered: {delivered!r} must be a list of {self.num_workers} "
                "integers >= 0 (rows delivered by each DataLoader worker of a rank)"
            )
        object.__setattr__(self, "delivered", tuple(delivered))


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def delivered_spans(total: int, progress: Progress) -> list[Span]:
    """Return the positions of ``[0, total)`` the old shape delivered, sorted and merged.

    Raises:
        SpecError: a worker's count exceeds the rows of its piece.
    """
    if total == 0:
        return []
    w, k = progress.world_size, progress.num_workers
    length = total // w if progress.drop_last else -(-total // w)
    spans: list[Span] = []
    for worker, count in enumerate(progress.delivered):
        lo, hi = split_bounds(length, part=worker, parts=k, unit=progress.unit)
        if count > hi - lo:
            raise SpecError(
                f"resume_from.delivered[{worker}]: {count} rows exceed the {hi - lo} rows of "
                f"worker {worker}'s piece of an epoch of {total} rows; the state belongs to "
                "another table snapshot or shape"
            )
        for rank in range(w):
            pos, end = rank * length + lo, rank * length + lo + count
            while pos < end:  # DistributedSampler padding wraps around the epoch
                lap = pos - pos % total
                stop = min(end, lap + total)
                spans.append((pos - lap, stop - lap))
                pos = stop
    return _merge(spans)


def remaining_spans(total: int, progress: Progress) -> list[Span]:
    """Return the positions the old shape would still have served, in epoch order.

    With the old ``drop_last`` the epoch's last ``total % world_size`` positions were
    never served, and are not now.
    """
    served = total
    if progress.drop_last and total:
        served = total // progress.world_size * progress.world_size
    out: list[Span] = []
    pos = 0
    for a, b in delivered_spans(total, progress):
        if a >= served:
            break
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < served:
        out.append((pos, served))
    return out


def _locate(remaining: Sequence[Span], start: int, stop: int) -> list[Span]:
    """Epoch positions of rows ``[start, stop)`` of the concatenated ``remaining`` spans."""
    out: list[Span] = []
    offset = 0
    for a, b in remaining:
        lo, hi = offset, offset + (b - a)
        offset = hi
        if hi <= start:
            continue
        if lo >= stop:
            break
        x, y = max(start, lo) - lo, min(stop, hi) - lo
        if y > x:
            out.append((a + x, a + y))
    return out


def elastic_spans(
    total: int,
    progress: Progress,
    *,
    rank: int,
    world_size: int,
    drop_last: bool,
    worker: int = 0,
    num_workers: int = 1,
    unit: int = 1,
    skip: int = 0,
) -> list[Span]:
    """Return the epoch positions one consumer of the new shape delivers, in order.

    The remaining positions (:func:`remaining_spans`, ``R`` rows) are split as
    :func:`feeder.protocol.mix.consumer_spans` splits an epoch of ``R`` rows; the
    first ``skip`` rows of the consumer's piece are left out (a same-shape resume
    after an elastic one).

    Raises:
        ValueError: a bad rank or worker.
        SpecError: ``progress`` does not fit an epoch of ``total`` rows.
    """
    remaining = remaining_spans(total, progress)
    rows = sum(b - a for a, b in remaining)
    virtual = consumer_spans(
        rows,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        worker=worker,
        num_workers=num_workers,
        unit=unit,
        skip=skip,
    )
    return [s for a, b in virtual for s in _locate(remaining, a, b)]
