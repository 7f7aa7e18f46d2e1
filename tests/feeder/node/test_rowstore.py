"""The row-major copy behind shuffled reads (feeder.node.rowstore, through feeder.node.cache)."""

from __future__ import annotations

import datetime as dt
import decimal
import logging

import numpy as np
import pyarrow as pa
import pytest

from feeder.node.cache import SliceCache
from feeder.node.rowstore import row_columns, worth_it
from feeder.protocol.slice_rows import ROWS_TOKEN_KEY

N = 3000


def mixed(n: int = N) -> pa.Table:
    """Every fixed-width type the copy holds, and columns it must leave to ``take``."""
    rng = np.random.default_rng(5)
    ids = np.arange(n, dtype=np.int64)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table(
        {
            "id": ids,
            "i8": pa.array(rng.integers(-100, 100, n), pa.int8()),
            "u16": pa.array(rng.integers(0, 60000, n), pa.uint16()),
            "f16": pa.array(rng.random(n).astype(np.float16), pa.float16()),
            "f32": pa.array(rng.random(n), pa.float32()),
            "f64": rng.random(n),
            "ts": pa.array(
                [start + dt.timedelta(seconds=int(i)) for i in ids], pa.timestamp("us", "UTC")
            ),
            "day": pa.array(
                [dt.date(2020, 1, 1) + dt.timedelta(days=int(i)) for i in ids], pa.date32()
            ),
            "t": pa.array(ids * 1000, pa.time64("us")),
            "dur": pa.array(ids, pa.duration("ms")),
            "dec": pa.array([decimal.Decimal(int(i)) / 100 for i in ids], pa.decimal128(12, 2)),
            "fsb": pa.array([int(i).to_bytes(3, "little") for i in ids], pa.binary(3)),
            "flag": pa.array(ids % 3 == 0),
            "name": pa.array([f"n{i}" for i in ids]),
            "maybe": pa.array([None if i % 5 == 0 else int(i) for i in ids], pa.int64()),
            "vec": pa.array([[float(i), -float(i)] for i in ids], pa.list_(pa.float32(), 2)),
        }
    )


def test_layout_takes_fixed_width_columns_without_nulls():
    layout = row_columns(mixed(10))
    assert layout is not None
    assert layout.names == (
        "id",
        "i8",
        "u16",
        "f16",
        "f32",
        "f64",
        "ts",
        "day",
        "t",
        "dur",
        "dec",
        "fsb",
    )
    assert layout.width == 8 + 1 + 2 + 2 + 4 + 8 + 8 + 4 + 8 + 8 + 16 + 3
    assert row_columns(pa.table({"a": [1, 2], "s": ["x", "y"]})) is None  # one column: no copy


def test_worth_it_counts_cache_lines():
    layout = row_columns(mixed(10))
    assert layout is not None
    assert worth_it(layout, ["id", "f64", "ts", "name"])
    assert not worth_it(layout, ["id", "name"])  # one row column: take is cheaper


@pytest.mark.parametrize(
    "columns",
    [
        None,
        ["f64", "id", "ts", "dec", "day"],
        ["name", "f32", "maybe", "u16", "vec", "flag", "i8", "fsb", "t", "dur", "f16"],
        ["id", "name"],
    ],
    ids=["all", "row-columns-only", "mixed-order", "one-row-column"],
)
def test_shuffled_read_equals_take_for_every_type(tmp_path, columns):
    table = mixed()
    cache = SliceCache(tmp_path, take_threads=2)
    cache.write(0, table)
    perm = np.random.default_rng(3).permutation(N).astype(np.int32)
    got = pa.Table.from_batches(
        list(cache.read(0, permutation=perm, start=11, stop=2990, columns=columns, batch_rows=700))
    )
    want = (table if columns is None else table.select(columns)).take(pa.array(perm[11:2990]))
    assert got.schema == want.schema
    assert got.equals(want)


def test_shuffled_read_uses_the_row_copy(tmp_path):
    table = pa.table({"a": np.arange(100, dtype=np.int64), "b": np.arange(100, dtype=np.int64)})
    cache = SliceCache(tmp_path)
    entry = cache.write(0, table)
    (rows_file,) = tmp_path.glob("slice-*.rows")
    # a copy of the same size holding other values: what a shuffled read returns proves its source
    (np.arange(200, dtype=np.int64) + 1000).tofile(rows_file)
    perm = np.arange(100)[::-1].copy()
    (batch,) = cache.read(0, permutation=perm, start=0, stop=3)
    assert batch.column("a").to_pylist() == [1198, 1196, 1194]
    # in table order the IPC file is served, not the copy
    (batch,) = cache.read(0, permutation=None, start=0, stop=3)
    assert batch.column("a").to_pylist() == [0, 1, 2]
    assert entry.rows_nbytes == 1600


def test_missing_or_truncated_copy_falls_back_to_take(tmp_path, caplog):
    table = mixed(500)
    perm = np.random.default_rng(4).permutation(500)
    want = table.take(pa.array(perm))
    for damage in ("truncate", "delete"):
        cache = SliceCache(tmp_path / damage)
        cache.write(0, table)
        (rows_file,) = (tmp_path / damage).glob("slice-*.rows")
        if damage == "truncate":
            with open(rows_file, "r+b") as fh:
                fh.truncate(100)
        else:
            rows_file.unlink()
        with caplog.at_level(logging.WARNING, logger="feeder.node.rowstore"):
            got = pa.Table.from_batches(list(cache.read(0, permutation=perm, start=0, stop=500)))
        assert got.equals(want)
    assert "expected 500 rows" in caplog.text  # the truncated copy is named, then ignored


def test_token_pairs_file_and_copy_and_stays_out_of_the_served_schema(tmp_path):
    table = mixed(50).replace_schema_metadata({"owner": "me"})
    cache = SliceCache(tmp_path)
    cache.write(0, table)
    served = cache.open(0).schema
    assert served.metadata == {b"owner": b"me"} and ROWS_TOKEN_KEY not in served.metadata
    # a rewrite (new token) removes the old copy; a stray copy from a crash goes on adopt
    first = next(tmp_path.glob("slice-*.rows"))
    cache.write(0, table)
    (second,) = tmp_path.glob("slice-*.rows")
    assert second != first
    (tmp_path / "slice-00000000.0123abcd.rows").write_bytes(b"left by a crash")
    (tmp_path / "slice-00000001.0123abcd.rows").write_bytes(b"no IPC file: never committed")
    (entry,) = SliceCache(tmp_path).adopt_existing()
    assert [p.name for p in tmp_path.glob("*.rows")] == [second.name]
    assert entry.rows_nbytes == second.stat().st_size
