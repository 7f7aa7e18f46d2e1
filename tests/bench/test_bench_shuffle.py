"""Shuffle quality and the numpy cost of each shuffle's gathers (no Spark, no sockets).

Quality (group ``shuffle_quality``): a 4 M-row table in 8 slices sorted by a
10-value label, batch 4096: the mean batch-label total-variation distance
(:func:`feeder.protocol.quality.batch_label_tv`) of each shuffle's epoch order,
overall and per rank with 2 ranks; MIX with its defaults and a few other
block/window settings. The bar: MIX defaults <= 0.05 (uniform: ~0.02). Locality
(``mix_per_host_*``): the same table, MIX defaults, its windows built per host group
(:func:`feeder.coordinator.mixplan.grouped_layout`) with slice ``s`` on host
``s % hosts`` (the registry's default placement), for a few slice and host counts:
what mixing only within what a host holds costs, overall (dynamic mode) and per rank
with one rank per node (static mode with ``locality``: rank ``r`` reads node ``r``'s).

Cost (group ``shuffle_gather``): on the torch bench table's shape (24 M rows of
id int64, x float64, y float32, label int32, 4 slices), the extra work each order
adds to in-order serving, per stage, in rows/s of one thread: the node's gather
(SLICE: one random row per row from the row-major copy; MIX:
:func:`feeder.protocol.blocks.read_block_stream`, runs of ``block_rows`` rows per
column) and the consumer's (MIX: :func:`feeder.client.windows.mix_window`: the
window's pieces joined in the stream's scratch buffer and ordered in 8-row units,
per column). In-order serving does
neither (zero-copy slices); ``sequential_copy`` (one copy of every byte) is the
reference. Nothing is asserted about speed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from feeder.client.windows import WindowScratch, mix_window
from feeder.coordinator.mixplan import grouped_layout, placement_groups
from feeder.protocol.blocks import read_block_stream
from feeder.protocol.mix import (
    MixParams,
    block_order,
    window_layout,
    window_permutation,
)
from feeder.protocol.orders import consumer_order, epoch_order
from feeder.protocol.quality import batch_label_tv
from feeder.protocol.shuffle import compact_row_permutation
from feeder.protocol.shuffle_kind import Shuffle
from tests.bench.recorder import record
from tests.feeder.mix_rows import piece_rows

pytestmark = [pytest.mark.bench]

QUALITY_ROWS = 4_000_000
QUALITY_SLICES = 8
BATCH = 4096
GATHER_ROWS = 24_000_000
GATHER_SLICES = 4
SETTINGS = [
    MixParams(),
    MixParams(block_rows=128, window_rows=256 * 1024),
    MixParams(block_rows=512, window_rows=512 * 1024),
    MixParams(block_rows=1024, window_rows=1024 * 1024),
    MixParams(block_rows=1024, window_rows=256 * 1024),
]


def _quality(kind: Shuffle, params: MixParams) -> dict[str, float]:
    counts = [QUALITY_ROWS // QUALITY_SLICES] * QUALITY_SLICES
    labels = np.arange(QUALITY_ROWS) * 10 // QUALITY_ROWS  # sorted by a 10-value label
    order = epoch_order(kind, counts, seed=0, epoch=0, params=params)
    out = {"tv": batch_label_tv(labels[order], BATCH)}
    for rank in range(2):
        part = consumer_order(order, rank=rank, world_size=2, drop_last=True)
        out[f"tv_rank{rank}_of_2"] = batch_label_tv(labels[part], BATCH)
    return out


@pytest.mark.parametrize("kind", [Shuffle.SLICE, Shuffle.OFF])
def test_bench_shuffle_quality_of_the_other_orders(kind):
    tv = _quality(kind, MixParams())
    record(
        "shuffle_quality", kind.value, batch_size=BATCH, **{k: round(v, 4) for k, v in tv.items()}
    )


@pytest.mark.parametrize("params", SETTINGS, ids=lambda p: f"B{p.block_rows}-W{p.window_rows}")
def test_bench_shuffle_quality_of_mix(params):
    tv = _quality(Shuffle.MIX, params)
    default = params == MixParams()
    record(
        "shuffle_quality",
        f"mix_B{params.block_rows}_W{params.window_rows}",
        batch_size=BATCH,
        block_rows=params.block_rows,
        window_rows=params.window_rows,
        default=default,
        target="<= 0.05" if default else None,
        **{k: round(v, 4) for k, v in tv.items()},
    )
    if default:
        uniform = np.random.default_rng(0).permutation(QUALITY_ROWS)
        labels = np.arange(QUALITY_ROWS) * 10 // QUALITY_ROWS
        record("shuffle_quality", "uniform", tv=round(batch_label_tv(labels[uniform], BATCH), 4))


def _per_host_order(counts: list[int], hosts: int, params: MixParams) -> np.ndarray:
    """The epoch's rows (table row numbers) with windows per host group, group by group."""
    groups = placement_groups(counts, lambda s: f"h{s % hosts}")
    layout = grouped_layout(tuple(counts), params, groups)
    streams = [
        block_order(n, block_rows=params.block_rows, seed=0, epoch=0, slice_id=s)
        for s, n in enumerate(counts)
    ]
    parts = []
    for unit in layout.units():
        read = layout.read(unit)
        rows = np.concatenate(
            [
                piece_rows(counts, p, params, seed=0, epoch=0, order=streams[p.slice_id])
                for p in read.pieces
            ]
        )
        parts.append(rows[window_permutation(read.rows, seed=0, epoch=0, window=read.window)])
    return np.concatenate(parts)


def _tv_against_table(part: np.ndarray, table: np.ndarray) -> float:
    """Mean total-variation distance between each full batch of ``part`` and ``table``'s
    label mix (``batch_label_tv`` compares with ``part``'s own mix)."""
    kinds = int(table.max()) + 1
    reference = np.bincount(table, minlength=kinds) / len(table)
    batches = len(part) // BATCH
    hist = np.stack(
        [np.bincount(part[i * BATCH : (i + 1) * BATCH], minlength=kinds) for i in range(batches)]
    )
    return float(0.5 * np.abs(hist / BATCH - reference).sum(axis=1).mean())


@pytest.mark.parametrize(
    ("slices", "hosts"), [(8, 2), (8, 4), (64, 4), (256, 8)], ids=lambda v: str(v)
)
def test_bench_shuffle_quality_of_mix_per_host(slices, hosts):
    counts = [QUALITY_ROWS // slices] * slices
    labels = np.arange(QUALITY_ROWS) * 10 // QUALITY_ROWS
    order = _per_host_order(counts, hosts, MixParams())
    assert np.array_equal(np.sort(order), np.arange(QUALITY_ROWS))  # every row once
    # static mode with locality: one rank per node, rank r's part is node r's slices;
    # its batches are judged against the whole table's label mix (not the rank's own)
    ranks = {
        f"tv_rank{r}_of_{hosts}_vs_table": round(
            _tv_against_table(
                labels[consumer_order(order, rank=r, world_size=hosts, drop_last=True)], labels
            ),
            4,
        )
        for r in (0, hosts - 1)
    }
    record(
        "shuffle_quality",
        f"mix_per_host_{slices}slices_{hosts}hosts",
        batch_size=BATCH,
        slices=slices,
        hosts=hosts,
        tv=round(batch_label_tv(labels[order], BATCH), 4),
        **ranks,
    )


def _columns(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "id": np.arange(n, dtype=np.int64),
        "x": rng.random(n),
        "y": rng.random(n, dtype=np.float32),
        "label": (np.arange(n) % 10).astype(np.int32),
    }


def _best(fn: Callable[[], None], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.fixture(scope="module")
def gather_table():
    n = GATHER_ROWS // GATHER_SLICES
    return n, _columns(n)


def test_bench_shuffle_gather_costs(gather_table):
    n, cols = gather_table
    slices = GATHER_SLICES
    total = n * slices
    row_bytes = sum(c.itemsize for c in cols.values())

    def sequential_copy() -> None:  # one pass over every byte: what any copy costs at least
        for _ in range(slices):
            for c in cols.values():
                c.copy()

    seconds = _best(sequential_copy)
    record(
        "shuffle_gather",
        "sequential_copy",
        rows=total,
        seconds=seconds,
        nbytes=total * row_bytes,
        baseline=True,
    )

    # SLICE today: per-row random gather from the row-major copy (one thread)
    dtype = np.dtype([(k, c.dtype) for k, c in cols.items()])
    rows = np.empty(n, dtype=dtype)
    for k, c in cols.items():
        rows[k] = c
    perm = compact_row_permutation(n, seed=0, epoch=0, slice_id=0)
    chunk = 32 * 1024

    def slice_gather() -> None:
        for lo in range(0, n, chunk):
            rows.take(perm[lo : lo + chunk])

    seconds = _best(slice_gather, repeats=1) * slices
    record(
        "shuffle_gather",
        "slice_node_row_gather",
        rows=total,
        seconds=seconds,
        nbytes=total * row_bytes,
    )

    table = pa.table(cols)
    schema = table.schema
    for params in SETTINGS:
        layout = window_layout([n] * slices, params)
        # one join buffer per stream, as a consumer has
        order = functools.partial(
            mix_window, schema=schema, seed=0, epoch=0, scratch=WindowScratch()
        )
        node_s = consumer_s = 0.0
        for w in range(layout.num_windows):
            t0 = time.perf_counter()
            pieces = [
                batch
                for p in layout.pieces(w)
                for batch in read_block_stream(
                    table,
                    slice_id=p.slice_id,
                    start=p.start,
                    stop=p.stop,
                    block_rows=params.block_rows,
                    seed=0,
                    epoch=0,
                    sizes=[p.num_rows],
                )
            ]
            t1 = time.perf_counter()
            size = int(layout.sizes[w])
            order(pieces, rows=size, keep_start=0, keep_stop=size, window=w)
            consumer_s += time.perf_counter() - t1
            node_s += t1 - t0
        tag = f"B{params.block_rows}_W{params.window_rows}"
        record(
            "shuffle_gather",
            f"mix_node_block_gather_{tag}",
            rows=total,
            seconds=node_s,
            nbytes=total * row_bytes,
        )
        record(
            "shuffle_gather",
            f"mix_consumer_window_permute_{tag}",
            rows=total,
            seconds=consumer_s,
            nbytes=total * row_bytes,
        )
