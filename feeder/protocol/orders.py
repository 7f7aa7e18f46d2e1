"""Every shuffle's whole-epoch order as table row numbers, by :class:`Shuffle` (a registry).

Reference implementations for tests and quality measurements (they hold one
integer per row: use them on small tables). What the feeder serves is the same
order, cut into tickets: SLICE by :mod:`feeder.protocol.shuffle`, MIX by
:mod:`feeder.protocol.mix`. Rows are numbered in table order: slice ``s``'s rows
after those of slices ``0..s-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from feeder.protocol.mix import MixParams, consumer_spans, mix_order
from feeder.protocol.shuffle import compact_row_permutation, epoch_stream
from feeder.protocol.shuffle_kind import Shuffle

EpochOrder = Callable[[Sequence[int], int, int, MixParams], np.ndarray]


def _off(row_counts: Sequence[int], seed: int, epoch: int, params: MixParams) -> np.ndarray:
    return np.arange(int(sum(row_counts)), dtype=np.int64)


def _slice(row_counts: Sequence[int], seed: int, epoch: int, params: MixParams) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(np.asarray(row_counts, dtype=np.int64))])
    parts = [
        starts[r.slice_id]
        + compact_row_permutation(r.num_rows, seed=seed, epoch=epoch, slice_id=r.slice_id)[
            r.start : r.stop
        ]
        for r in epoch_stream(row_counts, seed=seed, epoch=epoch, shuffle=True)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _mix(row_counts: Sequence[int], seed: int, epoch: int, params: MixParams) -> np.ndarray:
    return mix_order(row_counts, seed=seed, epoch=epoch, params=params)


#: the whole-epoch order of each shuffle: ``fn(row_counts, seed, epoch, mix_params)``
EPOCH_ORDERS: dict[Shuffle, EpochOrder] = {
    Shuffle.OFF: _off,
    Shuffle.SLICE: _slice,
    Shuffle.MIX: _mix,
}


def epoch_order(
    kind: Shuffle,
    row_counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    params: MixParams | None = None,
) -> np.ndarray:
    """Return the epoch order of ``kind`` as table row numbers (int64)."""
    return EPOCH_ORDERS[kind](row_counts, seed, epoch, params or MixParams())


def consumer_order(
    order: np.ndarray,
    *,
    rank: int,
    world_size: int,
    drop_last: bool,
    worker: int = 0,
    num_workers: int = 1,
    unit: int = 1,
    skip: int = 0,
) -> np.ndarray:
    """Return the rows one consumer delivers from the epoch ``order`` (PROTOCOL.md,
    *Static mode*: rank parts, worker pieces in whole units, resume skip)."""
    spans = consumer_spans(
        len(order),
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        worker=worker,
        num_workers=num_workers,
        unit=unit,
        skip=skip,
    )
    parts = [order[a:b] for a, b in spans]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
