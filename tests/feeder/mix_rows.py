"""Table rows of MIX pieces, for tests and benches that rebuild an epoch order by hand."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from feeder.protocol.mix import MixParams, block_runs
from feeder.protocol.shuffle import SliceRange


def piece_rows(
    counts: Sequence[int],
    piece: SliceRange,
    params: MixParams,
    *,
    seed: int,
    epoch: int,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Table row numbers (slice ``s``'s rows after those of slices ``0..s-1``) of the
    block-stream positions ``piece`` names, in stream order."""
    first = int(np.sum(np.asarray(counts[: piece.slice_id], dtype=np.int64)))
    runs = functools.partial(block_runs, block_rows=params.block_rows, seed=seed, epoch=epoch)
    n = int(counts[piece.slice_id])
    return first + runs(n, piece.start, piece.stop, slice_id=piece.slice_id, order=order).rows()
