"""Invariants of the MIX epoch order (feeder.protocol.mix) and of every shuffle's order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.mix import (
    UNIT_ROWS,
    WINDOW_STRATA,
    MixParams,
    block_order,
    block_runs,
    consumer_reads,
    consumer_spans,
    window_layout,
    window_permutation,
    window_units,
)
from feeder.protocol.orders import consumer_order, epoch_order
from feeder.protocol.quality import batch_label_tv
from feeder.protocol.shuffle_kind import Shuffle, parse_shuffle
from jobs.errors import SpecError

row_counts_st = st.lists(st.integers(0, 300), min_size=0, max_size=8)
params_st = st.builds(
    lambda b, k: MixParams(block_rows=b, window_rows=b * k),
    st.integers(1, 32),
    st.integers(1, 16),
)
seeds = st.integers(0, 2**64 - 1)
epochs = st.integers(0, 1000)


@given(row_counts_st, seeds, epochs, params_st, st.sampled_from(list(Shuffle)))
@settings(max_examples=150, deadline=None)
def test_every_order_is_a_permutation_of_all_rows(counts, seed, epoch, params, kind):
    order = epoch_order(kind, counts, seed=seed, epoch=epoch, params=params)
    assert sorted(order.tolist()) == list(range(sum(counts)))


@given(row_counts_st, seeds, epochs, params_st)
@settings(max_examples=100, deadline=None)
def test_mix_is_deterministic_for_a_seed(counts, seed, epoch, params):
    a = epoch_order(Shuffle.MIX, counts, seed=seed, epoch=epoch, params=params)
    b = epoch_order(Shuffle.MIX, counts, seed=seed, epoch=epoch, params=params)
    assert np.array_equal(a, b)


def test_mix_differs_across_epochs_and_seeds():
    counts = [500, 300, 700]
    base = epoch_order(Shuffle.MIX, counts, seed=1, epoch=0)
    assert not np.array_equal(base, epoch_order(Shuffle.MIX, counts, seed=1, epoch=1))
    assert not np.array_equal(base, epoch_order(Shuffle.MIX, counts, seed=2, epoch=0))


@given(row_counts_st, seeds, epochs, params_st)
@settings(max_examples=100, deadline=None)
def test_window_reads_rebuild_the_epoch_order(counts, seed, epoch, params):
    """What a consumer reads (pieces of block streams, permuted, kept) is the epoch order:
    the order is a function of the row counts alone, whoever serves the pieces."""
    order = epoch_order(Shuffle.MIX, counts, seed=seed, epoch=epoch, params=params)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = sum(counts)
    for a, b in [(0, total), (total // 3, total - total // 4)]:
        got = []
        for read in consumer_reads(counts, [(a, b)], params):
            pieces = [
                starts[p.slice_id]
                + block_runs(
                    counts[p.slice_id],
                    p.start,
                    p.stop,
                    block_rows=params.block_rows,
                    seed=seed,
                    epoch=epoch,
                    slice_id=p.slice_id,
                ).rows()
                for p in read.pieces
            ]
            window = np.concatenate(pieces)
            assert len(window) == read.rows
            perm = window_permutation(read.rows, seed=seed, epoch=epoch, window=read.window)
            got.append(window[perm[read.keep_start : read.keep_stop]])
        flat = np.concatenate(got) if got else np.empty(0, dtype=np.int64)
        assert np.array_equal(flat, order[a:b])


@given(st.integers(0, 200), st.integers(1, 40), seeds, epochs)
@settings(max_examples=100, deadline=None)
def test_block_runs_of_any_range_are_that_range_of_the_stream(n, b, seed, epoch):
    full = block_runs(n, 0, n, block_rows=b, seed=seed, epoch=epoch, slice_id=3).rows()
    assert sorted(full.tolist()) == list(range(n))
    order = block_order(n, block_rows=b, seed=seed, epoch=epoch, slice_id=3)
    rng = np.random.default_rng(seed % 2**32)
    for _ in range(5):
        lo, hi = sorted(rng.integers(0, n + 1, size=2).tolist())
        runs = block_runs(n, lo, hi, block_rows=b, seed=seed, epoch=epoch, slice_id=3, order=order)
        assert np.array_equal(runs.rows(), full[lo:hi])
        assert runs.num_rows == hi - lo
        assert all(int(k) < n // b for k in runs.blocks)


@given(row_counts_st, params_st)
@settings(max_examples=100, deadline=None)
def test_every_window_draws_from_every_large_slice_in_proportion(counts, params):
    layout = window_layout(counts, params)
    assert int(layout.offsets[-1]) == sum(counts)
    assert (layout.bounds[:, 0] == 0).all()
    assert np.array_equal(layout.bounds[:, -1], np.asarray(counts, dtype=np.int64))
    windows = layout.num_windows
    for s, n in enumerate(counts):
        per = np.diff(layout.bounds[s])
        blocks = -(-n // params.block_rows)
        # each window gets floor or ceil of the slice's blocks / windows
        assert per.max(initial=0) <= (-(-blocks // windows)) * params.block_rows


@given(
    st.integers(0, 500),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 64),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_ranks_and_workers_share_the_epoch_exactly_once(total, world, workers, unit, drop_last):
    order = np.random.default_rng(total).permutation(total)
    per_rank = []
    seen: Counter[int] = Counter()
    for rank in range(world):
        rows = [
            consumer_order(
                order,
                rank=rank,
                world_size=world,
                drop_last=drop_last,
                worker=w,
                num_workers=workers,
                unit=unit,
            )
            for w in range(workers)
        ]
        per_rank.append(sum(len(r) for r in rows))
        seen.update(np.concatenate(rows).tolist() if rows else [])
    assert len(set(per_rank)) <= 1  # equal rows per rank
    if drop_last:
        assert all(c == 1 for c in seen.values())
        assert len(seen) == total - total % world
    else:
        assert set(seen) == set(range(total))
        assert sum(seen.values()) - total < world  # padding repeats fewer than world rows


@given(st.integers(1, 400), st.integers(1, 3), st.integers(0, 400))
@settings(max_examples=100, deadline=None)
def test_resume_skips_exactly_the_rows_delivered(total, world, skip):
    full = consumer_spans(total, rank=world - 1, world_size=world, drop_last=False)
    rest = consumer_spans(total, rank=world - 1, world_size=world, drop_last=False, skip=skip)
    order = np.arange(total)
    a = np.concatenate([order[x:y] for x, y in full] or [np.empty(0, dtype=np.int64)])
    b = np.concatenate([order[x:y] for x, y in rest] or [np.empty(0, dtype=np.int64)])
    assert np.array_equal(a[skip:], b)


def _sorted_table(rows: int, files: int) -> tuple[list[int], np.ndarray]:
    counts = [rows // files] * files
    labels = np.arange(rows) * 10 // rows  # 10 labels, table sorted by label
    return counts, labels


def test_mix_batches_represent_the_table_and_slice_batches_do_not():
    """Sorted 10-label table, batch 4096: MIX (defaults) <= 0.05 overall and per rank
    with 2 ranks; the slice-local order about 0.8."""
    counts, labels = _sorted_table(2_000_000, 8)
    mix = epoch_order(Shuffle.MIX, counts, seed=0, epoch=0)
    assert batch_label_tv(labels[mix], 4096) <= 0.05
    for rank in range(2):
        part = consumer_order(mix, rank=rank, world_size=2, drop_last=True)
        assert batch_label_tv(labels[part], 4096) <= 0.05
    local = epoch_order(Shuffle.SLICE, counts, seed=0, epoch=0)
    assert batch_label_tv(labels[local], 4096) >= 0.6
    off = epoch_order(Shuffle.OFF, counts, seed=0, epoch=0)
    assert batch_label_tv(labels[off], 4096) >= 0.85


def test_batch_label_tv_is_zero_for_identical_batches_and_one_for_disjoint():
    assert batch_label_tv(np.tile([0, 1], 50), 10) == pytest.approx(0.0)
    assert batch_label_tv(np.repeat([0, 1], 10), 10) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        batch_label_tv(np.zeros(3), 4)


def test_parse_shuffle_maps_booleans_and_names_and_refuses_the_rest():
    assert parse_shuffle(True) is Shuffle.MIX
    assert parse_shuffle(False) is Shuffle.OFF
    assert parse_shuffle("slice") is Shuffle.SLICE
    assert parse_shuffle(Shuffle.MIX) is Shuffle.MIX
    for bad in ("random", 1, None):
        with pytest.raises(SpecError, match="shuffle"):
            parse_shuffle(bad)


def test_mix_params_are_validated():
    with pytest.raises(ValueError):
        MixParams(block_rows=0)
    with pytest.raises(ValueError):
        MixParams(block_rows=512, window_rows=256)


@given(st.integers(0, 3000), seeds, epochs, st.integers(0, 50))
@settings(max_examples=60, deadline=None)
def test_window_order_moves_whole_units_then_the_tail(rows, seed, epoch, window):
    units = window_units(rows, seed=seed, epoch=epoch, window=window)
    assert sorted(units.tolist()) == list(range(rows // UNIT_ROWS))
    perm = window_permutation(rows, seed=seed, epoch=epoch, window=window)
    assert sorted(perm.tolist()) == list(range(rows))
    head = len(units) * UNIT_ROWS
    assert np.array_equal(perm[:head:UNIT_ROWS], units.astype(np.int64) * UNIT_ROWS)
    assert np.array_equal(perm[head:], np.arange(head, rows))


def test_every_run_of_the_window_order_draws_from_every_stretch_of_the_window():
    """Runs of 4 * WINDOW_STRATA output units hold units of (nearly) every stratum."""
    units = window_units(512 * 1024, seed=1, epoch=2, window=3).astype(np.int64)
    strata = units * WINDOW_STRATA // len(units)
    run = 4 * WINDOW_STRATA
    covered = [len(np.unique(strata[i : i + run])) for i in range(0, len(units) - run, run)]
    assert min(covered) >= WINDOW_STRATA - 2
    # a uniform order of the same units covers far fewer in some run
    uniform = np.random.default_rng(0).permutation(len(units)) * WINDOW_STRATA // len(units)
    assert min(len(np.unique(uniform[i : i + run])) for i in range(0, len(units) - run, run)) < (
        WINDOW_STRATA - 2
    )


def _units_as_protocol_md_says(num_rows: int, seed: int, epoch: int, window: int) -> np.ndarray:
    """PROTOCOL.md, *Epoch order*, mix step 3, written out with stable sorts."""
    units = num_rows // UNIT_ROWS
    m = min(WINDOW_STRATA, units)
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(epoch, 0, 2, num_rows)))
    )
    stratum = np.arange(units) * m // units
    x = rng.random(units)
    rank = np.empty(units)
    for s in range(m):
        members = np.flatnonzero(stratum == s)
        rank[members[np.argsort(stratum[members] + x[members], kind="stable")]] = np.arange(
            len(members)
        )
    y = rng.random(units)
    sizes = np.bincount(stratum, minlength=m)
    order = np.argsort((rank + y) / sizes[stratum], kind="stable")
    shift_rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(epoch, 0, 3, window)))
    )
    shift = int(shift_rng.integers(units))
    return np.concatenate([order[shift:], order[:shift]])


@given(st.integers(8, 40_000), seeds, epochs, st.integers(0, 100))
@settings(max_examples=60, deadline=None)
def test_window_units_are_the_order_protocol_md_specifies(rows, seed, epoch, window):
    got = window_units(rows, seed=seed, epoch=epoch, window=window)
    assert np.array_equal(got, _units_as_protocol_md_says(rows, seed, epoch, window))


@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=0, max_size=50))
def test_the_fast_stable_sort_keeps_ties_in_index_order(keys):
    from feeder.protocol.mix import _stable_argsort  # the one private helper with a branch for ties

    key = np.asarray(keys, dtype=np.float64)
    assert np.array_equal(_stable_argsort(key), np.argsort(key, kind="stable"))
