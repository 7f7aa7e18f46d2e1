"""Deterministic two-level epoch order (slices, then rows within a slice) and how it is cut.

Pure numpy: nothing here touches Spark, sockets or disk. Every function
depends only on its arguments, so each rank, worker and data node computes the
same order without talking to anyone, whatever the number of data nodes.

Random streams (numpy ``PCG64``):

- slice order of epoch ``e``: ``SeedSequence(seed, spawn_key=(e,))``;
- row order inside slice ``s``: ``SeedSequence(seed, spawn_key=(e, s + 1))``.

The spawn keys keep the two levels independent of each other (a plain
``SeedSequence([seed, e])`` equals ``SeedSequence([seed, e, 0])``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MAX_SEED = 2**64
_MAX_WORD = 2**32 - 1


@dataclass(frozen=True, slots=True)
class SliceRange:
    """Positions ``[start, stop)`` of slice ``slice_id`` in that slice's epoch order."""

    slice_id: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.slice_id < 0 or not 0 <= self.start <= self.stop:
            raise ValueError(f"invalid slice range {self}")

    @property
    def num_rows(self) -> int:
        """Number of rows in the range."""
        return self.stop - self.start


def _check(seed: int, epoch: int) -> None:
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed {seed} must be in [0, 2**64)")
    if not 0 <= epoch < _MAX_WORD:
        raise ValueError(f"epoch {epoch} must be in [0, 2**32 - 1)")


def _rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def slice_order(num_slices: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Return the order of slice ids ``0..num_slices-1`` in ``epoch`` (identity without shuffle).

    Raises ValueError for a negative count, seed or epoch.
    """
    _check(seed, epoch)
    if num_slices < 0:
        raise ValueError(f"num_slices {num_slices} must be >= 0")
    if not shuffle:
        return np.arange(num_slices, dtype=np.int64)
    return _rng(seed, (epoch,)).permutation(num_slices).astype(np.int64, copy=False)


def row_permutation(
    num_rows: int, *, seed: int, epoch: int, slice_id: int, shuffle: bool
) -> np.ndarray | None:
    """Return the row order inside slice ``slice_id`` in ``epoch``; None means table order.

    Position ``p`` of the slice's epoch stream is row ``perm[p]`` of the slice.
    Raises ValueError for negative arguments.
    """
    _check(seed, epoch)
    if num_rows < 0 or not 0 <= slice_id < _MAX_WORD - 1:
        raise ValueError(f"invalid num_rows {num_rows} or slice_id {slice_id}")
    if not shuffle:
        return None
    return _rng(seed, (epoch, slice_id + 1)).permutation(num_rows).astype(np.int64, copy=False)


def compact_row_permutation(num_rows: int, *, seed: int, epoch: int, slice_id: int) -> np.ndarray:
    """Return the shuffled ``row_permutation`` of a slice as int32 when it fits, else int64.

    The same order (``Generator.shuffle`` of an ``arange`` draws exactly what
    ``permutation(n)`` draws, whatever the dtype), built without the int64
    array: half the memory a data node holds per slice it serves.
    Raises ValueError for negative arguments.
    """
    _check(seed, epoch)
    if num_rows < 0 or not 0 <= slice_id < _MAX_WORD - 1:
        raise ValueError(f"invalid num_rows {num_rows} or slice_id {slice_id}")
    perm = np.arange(num_rows, dtype=np.int32 if num_rows < 2**31 else np.int64)
    _rng(seed, (epoch, slice_id + 1)).shuffle(perm)
    return perm


def epoch_stream(
    row_counts: Sequence[int], *, seed: int, epoch: int, shuffle: bool
) -> list[SliceRange]:
    """Return the whole epoch's row stream: one full range per non-empty slice, in slice order.

    ``row_counts[s]`` is the exact row count of slice ``s``. Empty slices are left out.
    """
    if any(n < 0 for n in row_counts):
        raise ValueError("row counts must be >= 0")
    order = slice_order(len(row_counts), seed=seed, epoch=epoch, shuffle=shuffle)
    return [SliceRange(int(s), 0, int(row_counts[s])) for s in order if row_counts[s] > 0]


def total_rows(ranges: Sequence[SliceRange]) -> int:
    """Return the number of rows in ``ranges``."""
    return sum(r.num_rows for r in ranges)


def _window(ranges: Sequence[SliceRange], start: int, stop: int) -> list[SliceRange]:
    """Rows ``[start, stop)`` of the concatenation of ``ranges`` (no wrap-around)."""
    out: list[SliceRange] = []
    offset = 0
    for r in ranges:
        lo, hi = offset, offset + r.num_rows
        offset = hi
        if hi <= start:
            continue
        if lo >= stop:
            break
        a, b = max(start, lo) - lo, min(stop, hi) - lo
        if b > a:
            out.append(SliceRange(r.slice_id, r.start + a, r.start + b))
    return out


def _wrapped_window(ranges: Sequence[SliceRange], start: int, stop: int) -> list[SliceRange]:
    """Rows ``[start, stop)`` of ``ranges`` repeated end to end as often as needed."""
    n = total_rows(ranges)
    out: list[SliceRange] = []
    pos = start
    while pos < stop:
        lap_start = pos - pos % n
        end = min(stop, lap_start + n)
        out.extend(_window(ranges, pos - lap_start, end - lap_start))
        pos = end
    return out


def rank_ranges(
    row_counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    rank: int,
    world_size: int,
    drop_last: bool,
) -> list[SliceRange]:
    """Return rank ``rank``'s contiguous part of the epoch stream (static mode, DDP).

    Every rank gets the same length ``L``: ``N // world_size`` with ``drop_last``
    (the stream's last ``N % world_size`` rows are not served), else
    ``ceil(N / world_size)``, padding by repeating the stream from its start.
    Rank ``r`` gets positions ``[r*L, (r+1)*L)``. Raises ValueError unless
    ``0 <= rank < world_size``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
    stream = epoch_stream(row_counts, seed=seed, epoch=epoch, shuffle=shuffle)
    n = total_rows(stream)
    if n == 0:
        return []
    length = n // world_size if drop_last else -(-n // world_size)
    return _wrapped_window(stream, rank * length, (rank + 1) * length)


def split_bounds(total: int, *, part: int, parts: int, unit: int = 1) -> tuple[int, int]:
    """Return ``[start, stop)`` of part ``part`` of ``total`` rows cut into ``parts``.

    Rows are dealt in whole units of ``unit`` rows: with ``U = total // unit``
    full units, part ``p`` gets ``U // parts`` units plus one more if
    ``p < U % parts``; the trailing ``total % unit`` rows (a partial unit) go to
    the last part. So every part but the last is a whole number of units, the
    parts are contiguous and in order, and sizes differ by at most ``unit`` rows.
    """
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part {part} must be in [0, parts={parts})")
    if unit < 1 or total < 0:
        raise ValueError(f"unit {unit} must be >= 1 and total {total} >= 0")
    units, extra = divmod(total // unit, parts)

    def start_of(p: int) -> int:
        return (p * units + min(p, extra)) * unit

    stop = total if part == parts - 1 else start_of(part + 1)
    return start_of(part), stop


def split_ranges(
    ranges: Sequence[SliceRange], *, part: int, parts: int, unit: int = 1
) -> list[SliceRange]:
    """Return part ``part`` of ``ranges`` cut by rows into ``parts`` contiguous parts.

    Used by DataLoader workers with ``unit=batch_size`` so that each worker gets
    whole batches; the cut is :func:`split_bounds` applied to the rows of ``ranges``.
    """
    start, stop = split_bounds(total_rows(ranges), part=part, parts=parts, unit=unit)
    return _window(ranges, start, stop)


def skip_rows(ranges: Sequence[SliceRange], n: int) -> list[SliceRange]:
    """Return ``ranges`` without their first ``n`` rows (resume after ``n`` delivered rows)."""
    if n < 0:
        raise ValueError(f"cannot skip {n} rows")
    return _window(ranges, n, total_rows(ranges))


def position_ranges(
    ranges: Sequence[SliceRange], spans: Sequence[tuple[int, int]]
) -> list[SliceRange]:
    """Return the slice ranges of positions ``spans`` (``[start, stop)`` pairs) of ``ranges``."""
    return [r for a, b in spans for r in _window(ranges, a, b)]
