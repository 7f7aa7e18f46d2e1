"""The MIX epoch order: every batch draws from the whole table, at near in-order cost.

Pure numpy; depends only on (per-slice row counts, seed, epoch, block and window
rows), never on the number of data nodes or on arrival timing. It is built from
what is cheap on each side (PROTOCOL.md, *Epoch order*):

1. **Block stream of a slice** (served by a data node). Slice ``s`` of ``n`` rows
   is cut into ``n // B`` full blocks of ``B = block_rows`` contiguous rows and a
   tail of ``n % B`` rows. Its stream is the full blocks in a seeded random
   order, then the tail. Serving a range of it copies runs of ``B`` contiguous
   rows — no per-row random access on the node.
2. **Windows** (the coordinator's plan). The epoch is ``M = ceil(N / W)``
   windows (``W = window_rows``). Window ``w`` takes from *every* slice the
   positions ``[a_s(w), a_s(w+1))`` of its block stream, with
   ``a_s(w) = min(n_s, B * floor(ceil(n_s / B) * w / M))``: each slice gives a
   window its share of rows (stratified), as whole random blocks.
3. **Window order** (the consumer). The window's pieces, concatenated in slice
   order, are cut into units of ``UNIT_ROWS`` contiguous rows, ordered by a seeded
   stratified shuffle (:func:`window_units`): every ``WINDOW_STRATA`` output units
   hold about one unit of each ``1 / WINDOW_STRATA`` stretch of the window.
   The epoch order is the windows in order.

A batch of ``b`` rows then draws from every stretch of its window (every slice in
proportion), in random units of ``UNIT_ROWS`` rows, and a window is about ``W / B``
random blocks drawn from every slice in proportion. Random streams (numpy
``PCG64``): block order of slice ``s``: ``SeedSequence(seed, spawn_key=(epoch, 0,
1, s))``; window orders: ``(epoch, 0, 2, rows)`` rotated by ``(epoch, 0, 3, w)``
(:func:`window_units`; the second word 0 keeps them
apart from the slice order's ``(epoch, s + 1)``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from feeder.protocol.shuffle import SliceRange, split_bounds

#: rows per block: runs of 256 rows keep the node's gather near memory bandwidth
DEFAULT_BLOCK_ROWS = 256
#: rows per window: the consumer's shuffle buffer (~W / B = 2048 blocks per window)
DEFAULT_WINDOW_ROWS = 512 * 1024
_MAX_SEED = 2**64
_MAX_WORD = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class MixParams:
    """The knobs of MIX: ``block_rows`` (B) and ``window_rows`` (W).

    Raises ValueError unless ``1 <= block_rows <= window_rows < 2**31``.
    """

    block_rows: int = DEFAULT_BLOCK_ROWS
    window_rows: int = DEFAULT_WINDOW_ROWS

    def __post_init__(self) -> None:
        if not 1 <= self.block_rows <= self.window_rows < 2**31:
            raise ValueError(
                f"block_rows {self.block_rows} and window_rows {self.window_rows} must satisfy "
                "1 <= block_rows <= window_rows < 2**31"
            )


def _check(seed: int, epoch: int) -> None:
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed {seed} must be in [0, 2**64)")
    if not 0 <= epoch < _MAX_WORD:
        raise ValueError(f"epoch {epoch} must be in [0, 2**32 - 1)")


def _rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def block_order(
    num_rows: int, *, block_rows: int, seed: int, epoch: int, slice_id: int
) -> np.ndarray:
    """Return the order of slice ``slice_id``'s full blocks in ``epoch`` (block ids, int64).

    Raises ValueError for negative arguments or ``block_rows < 1``.
    """
    _check(seed, epoch)
    if num_rows < 0 or block_rows < 1 or not 0 <= slice_id < _MAX_WORD:
        raise ValueError(f"invalid num_rows {num_rows}, block_rows {block_rows}, slice {slice_id}")
    full = num_rows // block_rows
    return _rng(seed, (epoch, 0, 1, slice_id)).permutation(full).astype(np.int64, copy=False)


@dataclass(frozen=True)
class BlockRuns:
    """Positions ``[start, stop)`` of a block stream as runs of contiguous rows of the slice.

    In order: ``head`` rows ``[head[0], head[1])`` (part of a block, may be empty),
    then the full blocks ``blocks`` (ids; block ``k`` is rows ``[k*B, (k+1)*B)``),
    then ``tail`` rows ``[tail[0], tail[1])`` (part of a block and/or of the slice's
    tail; may be empty). ``head`` and ``tail`` are each one contiguous run.
    """

    block_rows: int
    head: tuple[int, int]
    blocks: np.ndarray
    tail: tuple[int, int]

    @property
    def num_rows(self) -> int:
        """Rows covered."""
        return (
            self.head[1]
            - self.head[0]
            + len(self.blocks) * self.block_rows
            + self.tail[1]
            - self.tail[0]
        )

    def rows(self) -> np.ndarray:
        """The slice row of every position, in order (int64)."""
        b = self.block_rows
        middle = (self.blocks[:, None] * b + np.arange(b, dtype=np.int64)).ravel()
        return np.concatenate(
            [
                np.arange(*self.head, dtype=np.int64),
                middle,
                np.arange(*self.tail, dtype=np.int64),
            ]
        )


def block_runs(
    num_rows: int,
    start: int,
    stop: int,
    *,
    block_rows: int,
    seed: int,
    epoch: int,
    slice_id: int,
    order: np.ndarray | None = None,
) -> BlockRuns:
    """Return positions ``[start, stop)`` of slice ``slice_id``'s block stream as row runs.

    ``order`` is :func:`block_order` of the slice if the caller has it (a node
    caches it). Raises ValueError unless ``0 <= start <= stop <= num_rows``.
    """
    if not 0 <= start <= stop <= num_rows:
        raise ValueError(f"positions [{start}, {stop}) are outside a slice of {num_rows} rows")
    b = block_rows
    if order is None:
        order = block_order(num_rows, block_rows=b, seed=seed, epoch=epoch, slice_id=slice_id)
    full_end = len(order) * b  # positions from here on are the slice's tail, in table order
    head, tail = (0, 0), (0, 0)
    blocks = np.empty(0, dtype=np.int64)
    end = min(stop, full_end)
    if start < end:
        first, last = start // b, (end - 1) // b
        lo, hi = start - first * b, end - last * b
        if first == last and (lo > 0 or hi < b):
            row0 = int(order[first]) * b
            head = (row0 + lo, row0 + hi)
        else:
            if lo > 0:
                row0 = int(order[first]) * b
                head = (row0 + lo, row0 + b)
            blocks = order[(first if lo == 0 else first + 1) : (last + 1 if hi == b else last)]
            if hi < b:  # then stop < full_end: no slice tail follows
                row0 = int(order[last]) * b
                tail = (row0, row0 + hi)
    if stop > full_end:
        tail = (max(start, full_end), stop)
    return BlockRuns(b, head, blocks, tail)


@dataclass(frozen=True)
class WindowLayout:
    """Which positions of each slice's block stream each window takes (seed-independent).

    ``bounds[s, w]`` is ``a_s(w)``; window ``w`` has ``sizes[w]`` rows and starts at
    position ``offsets[w]`` of the epoch order (``offsets[-1]`` is the table's rows).
    """

    bounds: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray

    @property
    def num_windows(self) -> int:
        """Number of windows."""
        return len(self.sizes)

    def pieces(self, window: int) -> list[SliceRange]:
        """Window ``window``'s non-empty slice ranges, in slice order (worked out once per
        window: a coordinator asks for the same windows in every plan and lease)."""
        memo = self._pieces_memo
        got = memo.get(window)
        if got is None:
            lo, hi = self.bounds[:, window].tolist(), self.bounds[:, window + 1].tolist()
            got = memo[window] = tuple(
                SliceRange(s, lo[s], hi[s]) for s in range(len(lo)) if hi[s] > lo[s]
            )
        return list(got)

    @functools.cached_property
    def _pieces_memo(self) -> dict[int, tuple[SliceRange, ...]]:
        return {}


def window_layout(row_counts: Sequence[int], params: MixParams) -> WindowLayout:
    """Return the windows of a table whose slice ``s`` has ``row_counts[s]`` rows.

    Raises ValueError for a negative row count.
    """
    counts = np.asarray(row_counts, dtype=np.int64).reshape(-1)
    if (counts < 0).any():
        raise ValueError("row counts must be >= 0")
    total = int(counts.sum())
    b = params.block_rows
    windows = max(1, -(-total // params.window_rows))
    blocks = -(-counts // b)  # a tail counts as a block
    w = np.arange(windows + 1, dtype=np.int64)
    bounds = np.minimum(counts[:, None], b * ((blocks[:, None] * w[None, :]) // windows))
    sizes = (bounds[:, 1:] - bounds[:, :-1]).sum(axis=0) if len(counts) else np.zeros(windows)
    sizes = np.asarray(sizes, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return WindowLayout(bounds, sizes, offsets)


#: rows per unit of the window order: the consumer moves runs of this many rows
UNIT_ROWS = 8
#: strata of the window order: every run of this many output units holds one unit of
#: each stratum (a ``1 / WINDOW_STRATA`` stretch of the window's pieces)
WINDOW_STRATA = 64


def window_units(num_rows: int, *, seed: int, epoch: int, window: int) -> np.ndarray:
    """Return window ``window``'s unit order: output unit ``i`` is unit ``units[i]`` (rows
    ``[k*UNIT_ROWS, (k+1)*UNIT_ROWS)``) of the window's concatenated pieces; the last
    ``num_rows % UNIT_ROWS`` rows follow in order (int32 when it fits, else int64).

    The ``U = num_rows // UNIT_ROWS`` units are cut into ``m = min(WINDOW_STRATA, U)``
    strata of contiguous units (unit ``k`` is in stratum ``k * m // U``); a stratum's
    units are drawn in a uniform random order and the strata interleaved at random
    (sort key ``(rank in stratum + jitter) / stratum size``), so every ``m`` output units
    hold about one unit of each stratum: each slice of the window (its pieces lie in
    slice order) gives every batch its share. The order is drawn once per window size
    and epoch (key ``(epoch, 0, 2, num_rows)``) and rotated left per window by ``r_w``
    drawn from ``[0, U)`` (key ``(epoch, 0, 3, window)``). Moving runs of
    ``UNIT_ROWS`` rows instead of single rows costs the consumer about a third.
    Raises ValueError for negative arguments.
    """
    _check(seed, epoch)
    if not 0 <= num_rows < _MAX_WORD or not 0 <= window < _MAX_WORD:
        raise ValueError(f"invalid num_rows {num_rows} or window {window}")
    units = num_rows // UNIT_ROWS
    if units == 0:
        return np.empty(0, dtype=np.int32)
    base = _base_units(num_rows, seed, epoch)
    shift = int(_rng(seed, (epoch, 0, 3, window)).integers(units))
    return np.concatenate([base[shift:], base[:shift]])


def window_permutation(num_rows: int, *, seed: int, epoch: int, window: int) -> np.ndarray:
    """Return window ``window``'s row permutation: output ``i`` is row ``perm[i]`` of the
    window's concatenated pieces (int64): :func:`window_units` expanded to rows.

    Raises ValueError for negative arguments.
    """
    units = window_units(num_rows, seed=seed, epoch=epoch, window=window).astype(np.int64)
    head = len(units) * UNIT_ROWS
    rows = (units[:, None] * UNIT_ROWS + np.arange(UNIT_ROWS, dtype=np.int64)).ravel()
    return np.concatenate([rows, np.arange(head, num_rows, dtype=np.int64)])


_BASE_LOCK = threading.Lock()


def _base_units(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    with _BASE_LOCK:
        return _cached_base(num_rows, seed, epoch)


def _stable_argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")``, about 3x faster on random keys: an unstable sort
    gives the same order whenever no two keys are equal (then the order is unique), which
    is checked; with ties, the stable sort decides."""
    order = np.argsort(key)
    ranked = key[order]
    if len(ranked) > 1 and bool((ranked[1:] == ranked[:-1]).any()):
        return np.argsort(key, kind="stable")
    return order


@functools.lru_cache(maxsize=8)
def _cached_base(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    units = num_rows // UNIT_ROWS
    strata = min(WINDOW_STRATA, units)
    rng = _rng(seed, (epoch, 0, 2, num_rows))
    stratum = np.arange(units, dtype=np.int64) * strata // units
    sizes = np.bincount(stratum, minlength=strata)
    firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    grouped = _stable_argsort(stratum + rng.random(units))  # random within stratum
    rank = np.empty(units, dtype=np.float64)
    rank[grouped] = np.arange(units) - np.repeat(firsts, sizes)
    key = (rank + rng.random(units)) / sizes[stratum]
    order = _stable_argsort(key).astype(np.int32 if units < 2**31 else np.int64)
    order.setflags(write=False)
    return order


@dataclass(frozen=True)
class WindowRead:
    """What a consumer reads for one window: every piece, then keeps output rows
    ``[keep_start, keep_stop)`` of the window's permuted order."""

    window: int
    rows: int
    keep_start: int
    keep_stop: int
    pieces: tuple[SliceRange, ...]

    @property
    def num_rows(self) -> int:
        """Rows the consumer keeps."""
        return self.keep_stop - self.keep_start


def window_reads(layout: WindowLayout, start: int, stop: int) -> list[WindowRead]:
    """Return the window reads that deliver positions ``[start, stop)`` of the epoch order.

    Raises ValueError unless ``0 <= start <= stop <= total rows``.
    """
    offsets = layout.offsets
    if not 0 <= start <= stop <= int(offsets[-1]):
        raise ValueError(f"positions [{start}, {stop}) outside an epoch of {int(offsets[-1])}")
    out: list[WindowRead] = []
    if start == stop:
        return out
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    for w in range(first, layout.num_windows):
        lo, hi = int(offsets[w]), int(offsets[w + 1])
        if lo >= stop:
            break
        a, b = max(start, lo) - lo, min(stop, hi) - lo
        if b > a:
            out.append(WindowRead(w, hi - lo, a, b, tuple(layout.pieces(w))))
    return out


def consumer_spans(
    total: int,
    *,
    rank: int,
    world_size: int,
    drop_last: bool,
    worker: int = 0,
    num_workers: int = 1,
    unit: int = 1,
    skip: int = 0,
) -> list[tuple[int, int]]:
    """Return the epoch positions one consumer delivers, as ``[start, stop)`` spans in order.

    Rank ``rank`` gets positions ``[r*L, (r+1)*L)`` of the epoch order repeated end
    to end (``L = total // world_size`` with ``drop_last``, else its ceiling:
    DistributedSampler padding); worker ``worker`` its piece of that in whole
    ``unit``-row units (:func:`feeder.protocol.shuffle.split_bounds`); the first
    ``skip`` rows of the piece are left out. Raises ValueError for a bad rank or
    worker.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
    if skip < 0:
        raise ValueError(f"cannot skip {skip} rows")
    if total == 0:
        return []
    length = total // world_size if drop_last else -(-total // world_size)
    lo, hi = split_bounds(length, part=worker, parts=num_workers, unit=unit)
    pos, end = rank * length + lo + skip, rank * length + hi
    spans: list[tuple[int, int]] = []
    while pos < end:
        lap = pos - pos % total
        stop = min(end, lap + total)
        spans.append((pos - lap, stop - lap))
        pos = stop
    return spans


def consumer_reads(
    row_counts: Sequence[int],
    spans: Sequence[tuple[int, int]],
    params: MixParams,
    *,
    layout: WindowLayout | None = None,
) -> list[WindowRead]:
    """Return the window reads of ``spans`` (from :func:`consumer_spans`), in order.

    ``layout``: ``window_layout(row_counts, params)`` if the caller already has it.
    """
    if layout is None:
        layout = window_layout(row_counts, params)
    return [read for a, b in spans for read in window_reads(layout, a, b)]


def mix_order(
    row_counts: Sequence[int], *, seed: int, epoch: int, params: MixParams | None = None
) -> np.ndarray:
    """Return the whole epoch order as table row numbers (slice ``s``'s rows numbered
    after those of slices ``0..s-1``). For tests and quality measurements: it holds
    every row, so use it on small tables."""
    params = params or MixParams()
    layout = window_layout(row_counts, params)
    starts = np.concatenate([[0], np.cumsum(np.asarray(row_counts, dtype=np.int64))])
    streams = [
        block_order(int(n), block_rows=params.block_rows, seed=seed, epoch=epoch, slice_id=s)
        for s, n in enumerate(row_counts)
    ]
    parts: list[np.ndarray] = []
    for w in range(layout.num_windows):
        rows = [
            starts[p.slice_id]
            + block_runs(
                int(row_counts[p.slice_id]),
                p.start,
                p.stop,
                block_rows=params.block_rows,
                seed=seed,
                epoch=epoch,
                slice_id=p.slice_id,
                order=streams[p.slice_id],
            ).rows()
            for p in layout.pieces(w)
        ]
        window = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        parts.append(window[window_permutation(len(window), seed=seed, epoch=epoch, window=w)])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
