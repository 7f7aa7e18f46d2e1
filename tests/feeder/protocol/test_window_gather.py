"""Whole MIX windows ordered by whoever holds their pieces: the rows and cuts, the header."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feeder.protocol.blocks import GatherScratch
from feeder.protocol.chunking import Chunking
from feeder.protocol.mix import MixParams, mix_order, window_layout
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import MAX_BUNDLE_TICKETS, TicketClaims
from feeder.protocol.window_gather import (
    WindowSpec,
    parse_windows,
    window_batch,
    window_stream,
    windows_header,
)
from jobs.errors import FeederError

COUNTS = [1000, 37, 2501, 640, 999]  # slice tails, a slice smaller than a block
MIX = MixParams(block_rows=32, window_rows=1024)
SEED, EPOCH = 11, 3


def _slices(nullable: bool = False) -> list[pa.Table]:
    """Slice ``s`` holds table rows numbered after slices ``0..s-1``: ``row`` (int64), an
    int32, a float32, a string and (``nullable``) an int64 with nulls."""
    out, first = [], 0
    for n in COUNTS:
        rows = np.arange(first, first + n, dtype=np.int64)
        columns = {
            "row": rows,
            "small": (rows % 1000).astype(np.int32),
            "f": rows.astype(np.float32),
            "s": pa.array([f"r{r}" for r in rows]),
        }
        if nullable:
            columns["n"] = pa.array([None if r % 7 == 0 else int(r) for r in rows], pa.int64())
        out.append(pa.table(columns))
        first += n
    return out


def _claims(slice_id: int, start: int, stop: int) -> TicketClaims:
    return TicketClaims(
        job="j",
        snapshot_id=1,
        slice_id=slice_id,
        start=start,
        stop=stop,
        epoch=EPOCH,
        seed=SEED,
        shuffle=Shuffle.MIX,
        block_rows=MIX.block_rows,
    )


def _pieces(tables: list[pa.Table], window: int) -> list[tuple[pa.Table, TicketClaims]]:
    layout = window_layout(COUNTS, MIX)
    return [
        (tables[p.slice_id], _claims(p.slice_id, p.start, p.stop)) for p in layout.pieces(window)
    ]


def _expected(window: int, keep: tuple[int, int]) -> list[int]:
    layout = window_layout(COUNTS, MIX)
    order = mix_order(COUNTS, seed=SEED, epoch=EPOCH, params=MIX)
    at = int(layout.offsets[window])
    return order[at + keep[0] : at + keep[1]].tolist()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nullable", [False, True], ids=["plain", "nulls"])
def test_every_window_comes_out_in_the_epoch_order_with_every_column_consistent(nullable, threads):
    tables = _slices(nullable)
    layout = window_layout(COUNTS, MIX)
    assert layout.num_windows > 3
    for w in range(layout.num_windows):
        rows = int(layout.sizes[w])
        for keep in [(0, rows), (5, rows - 3), (rows // 2, rows // 2), (rows - 1, rows)]:
            spec = WindowSpec(w, len(layout.pieces(w)), *keep)
            batch = window_batch(_pieces(tables, w), spec, gather=GatherScratch(), threads=threads)
            got = batch.column("row").to_pylist()
            assert got == _expected(w, keep), (w, keep)
            assert batch.column("small").to_pylist() == [r % 1000 for r in got]
            assert batch.column("f").to_pylist() == [float(np.float32(r)) for r in got]
            assert batch.column("s").to_pylist() == [f"r{r}" for r in got]
            if nullable:
                assert batch.column("n").to_pylist() == [None if r % 7 == 0 else r for r in got]


def test_a_bundle_of_windows_is_cut_on_the_consumers_grid_across_windows():
    tables = _slices()
    layout = window_layout(COUNTS, MIX)
    windows = [1, 2, 3]
    keeps = [(100, int(layout.sizes[1])), (0, int(layout.sizes[2])), (0, 777)]
    pieces = [piece for w in windows for piece in _pieces(tables, w)]
    specs = [WindowSpec(w, len(layout.pieces(w)), *k) for w, k in zip(windows, keeps, strict=True)]
    grid = Chunking(lead=50, unit=128)
    batches = list(window_stream(pieces, specs, chunking=grid, batch_rows=300))
    ids = [r for b in batches for r in b.column("row").to_pylist()]
    assert ids == [r for w, k in zip(windows, keeps, strict=True) for r in _expected(w, k)]
    # cuts only on the grid (50, 178, 306, ...) or at window ends; none longer than 300 rows
    ends = np.cumsum([b.num_rows for b in batches]).tolist()
    window_ends = np.cumsum([b - a for a, b in keeps]).tolist()
    assert all((e - 50) % 128 == 0 or e in window_ends for e in ends), ends
    assert max(b.num_rows for b in batches) <= 300


def test_pieces_of_different_orders_or_a_keep_outside_the_window_are_refused():
    tables = _slices()
    pieces = _pieces(tables, 0)
    spec = WindowSpec(0, len(pieces), 0, 10)

    def batch(ps, s):
        return window_batch(ps, s, gather=GatherScratch())

    other_seed = [(t, c) for t, c in pieces]
    t, c = other_seed[1]
    other_seed[1] = (t, TicketClaims(**{**c.__dict__, "seed": SEED + 1}))
    with pytest.raises(FeederError, match="different epoch orders"):
        batch(other_seed, spec)
    plain = [
        (t, TicketClaims(**{**c.__dict__, "shuffle": Shuffle.OFF, "block_rows": 0}))
        for t, c in pieces
    ]
    with pytest.raises(FeederError, match="not a MIX range"):
        batch(plain, spec)
    rows = sum(c.stop - c.start for _, c in pieces)
    with pytest.raises(FeederError, match="outside"):
        batch(pieces, WindowSpec(0, len(pieces), 0, rows + 1))
    with pytest.raises(FeederError, match="do not take"):
        list(
            window_stream(
                pieces, [WindowSpec(0, len(pieces) - 1, 0, 1)], chunking=Chunking(), batch_rows=10
            )
        )


def test_the_header_round_trips_and_malformed_ones_are_refused():
    specs = [WindowSpec(3, 2, 0, 100), WindowSpec(4, 5, 7, 7)]
    assert parse_windows(windows_header(specs), 7) == specs
    assert parse_windows(None, 7) is None
    for bad, match in [
        ("", "window:pieces"),
        ("1:2:3", "window:pieces"),
        ("1:2:-3:4", "window:pieces"),
        ("a:1:0:0", "window:pieces"),
        ("1:1:5:4", "not a row range"),
        ("1:0:0:0", "out of range"),
        ("1:3:0:1", "names 3 pieces, the bundle holds 7"),
        (";".join(["1:1:0:0"] * 8), "does not fit"),
        ("1:7:0:1" + " " * 100_000, "does not fit"),
    ]:
        with pytest.raises(FeederError, match=match):
            parse_windows(bad, 7)
    with pytest.raises(FeederError, match="out of range"):
        WindowSpec(0, MAX_BUNDLE_TICKETS + 1, 0, 0)
