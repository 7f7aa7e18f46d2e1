"""The slice cache on real files: atomic writes, memory-mapped reads, ordered ranges."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feeder.node.cache import SliceCache
from jobs.errors import FeederError
from tests.feeder.tables import sample_arrow


def ids(batches) -> list[int]:
    return [v for b in batches for v in b.column("id").to_pylist()]


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    cache = SliceCache(tmp_path / "c")
    entry = cache.write(3, sample_arrow(1000))
    assert entry.path.name == "slice-00000003.arrow"
    assert entry.num_rows == 1000 and entry.nbytes == entry.path.stat().st_size
    # the IPC file and the row copy of its fixed-width columns (id, x, cat: 20 B a row)
    (rows_file,) = (tmp_path / "c").glob("slice-00000003.*.rows")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        [entry.path.name, rows_file.name, cache.checksum_path(3).name]
    )
    assert entry.rows_nbytes == rows_file.stat().st_size == 1000 * 20
    assert cache.total_bytes() == entry.nbytes + entry.rows_nbytes
    # an IPC *file* (footer included), readable by a plain pyarrow reader
    with pa.memory_map(str(entry.path)) as source:
        assert pa.ipc.open_file(source).read_all().equals(sample_arrow(1000))
    assert cache.get(3) == entry and cache.get(4) is None


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    cache = SliceCache(tmp_path)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr("feeder.node.cache.os.replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        cache.write(0, sample_arrow(10))
    assert list(tmp_path.iterdir()) == []
    assert cache.get(0) is None
    monkeypatch.undo()
    assert cache.write(0, sample_arrow(10)).num_rows == 10


def test_sequential_read_is_table_order_and_zero_copy(tmp_path):
    cache = SliceCache(tmp_path)
    cache.write(0, sample_arrow(5000))
    before = pa.total_allocated_bytes()
    batches = list(cache.read(0, permutation=None, start=100, stop=4100, batch_rows=1000))
    assert [b.num_rows for b in batches] == [1000] * 4
    assert ids(batches) == list(range(100, 4100))
    # slices of the memory map: nothing allocated from the Arrow memory pool
    assert pa.total_allocated_bytes() - before == 0


def test_shuffled_read_follows_the_permutation(tmp_path):
    cache = SliceCache(tmp_path)
    cache.write(0, sample_arrow(5000))
    perm = np.random.default_rng(1).permutation(5000)
    got = ids(cache.read(0, permutation=perm, start=250, stop=4999, batch_rows=333))
    assert got == perm[250:4999].tolist()


def test_without_row_copies_only_the_ipc_file_is_written_and_shuffled_reads_still_work(
    tmp_path,
):
    cache = SliceCache(tmp_path, row_copy=False)
    entry = cache.write(0, sample_arrow(5000))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        cache.path(0).name,
        cache.checksum_path(0).name,
    ]
    assert entry.rows_nbytes == 0 and cache.total_bytes() == entry.nbytes
    perm = np.random.default_rng(2).permutation(5000)
    got = ids(cache.read(0, permutation=perm, start=10, stop=4000, batch_rows=777))
    assert got == perm[10:4000].tolist()


def test_shuffled_read_on_the_gather_pool_equals_one_plain_take(tmp_path):
    # chunks gathered concurrently, several in flight: rows, columns and order as one take
    table = sample_arrow(5000)
    cache = SliceCache(tmp_path, take_threads=2)
    cache.write(0, table)
    perm = np.random.default_rng(2).permutation(5000).astype(np.int32)
    got = pa.Table.from_batches(
        list(cache.read(0, permutation=perm, start=7, stop=4990, batch_rows=250))
    )
    assert got.schema == table.schema
    assert got.equals(table.take(pa.array(perm[7:4990])))


def test_projection_and_bad_requests(tmp_path):
    cache = SliceCache(tmp_path)
    cache.write(0, sample_arrow(50))
    (batch,) = cache.read(0, permutation=None, start=0, stop=50, columns=["name", "id"])
    assert batch.schema.names == ["name", "id"]
    with pytest.raises(FeederError, match="unknown column"):
        list(cache.read(0, permutation=None, start=0, stop=5, columns=["nope"]))
    with pytest.raises(FeederError, match="outside"):
        list(cache.read(0, permutation=None, start=10, stop=51))
    with pytest.raises(FeederError, match="not cached"):
        list(cache.read(1, permutation=None, start=0, stop=1))
    with pytest.raises(FeederError, match="permutation"):
        list(cache.read(0, permutation=np.arange(3), start=0, stop=3))


def test_empty_slice_round_trips(tmp_path):
    cache = SliceCache(tmp_path)
    entry = cache.write(0, sample_arrow(0))
    assert entry.num_rows == 0
    assert cache.open(0).num_rows == 0
    assert list(cache.read(0, permutation=None, start=0, stop=0)) == []


def test_open_maps_the_file_instead_of_reading_it(tmp_path):
    n = 400_000  # ~13 MB of fixed-width data
    table = pa.table({"id": np.arange(n), "a": np.random.rand(n), "b": np.random.rand(n)})
    cache = SliceCache(tmp_path)
    entry = cache.write(0, table)
    del table
    before = pa.total_allocated_bytes()
    mapped = cache.open(0)
    assert mapped.num_rows == n
    assert pa.total_allocated_bytes() - before < entry.nbytes // 100
    assert mapped.column("id")[n - 1].as_py() == n - 1


def test_clear_removes_everything(tmp_path):
    cache = SliceCache(tmp_path / "c")
    cache.write(0, sample_arrow(10))
    cache.write(1, sample_arrow(10))
    assert cache.total_bytes() > 0 and len(cache.entries()) == 2
    cache.clear()
    assert cache.entries() == [] and list((tmp_path / "c").iterdir()) == []


def test_adopt_existing_registers_files_left_by_an_earlier_node(tmp_path):
    first = SliceCache(tmp_path)
    first.write(0, sample_arrow(30))
    first.write(7, sample_arrow(12))
    (tmp_path / ".tmp-00000009-dead").write_bytes(b"half a file")
    again = SliceCache(tmp_path)
    assert [(e.slice_id, e.num_rows) for e in again.adopt_existing()] == [(0, 30), (7, 12)]
    assert again.open(7).num_rows == 12
