"""FeederDataset: pure pieces (arguments, state) and reading through a real feeder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pytest
import torch

from feeder.protocol.mix import MixParams
from feeder.torch import TensorOptions
from feeder.torch.dataset import FeederDataset
from jobs.errors import FeederError, SpecError

# The feeder's coordinator (a gRPC server) runs in this process, and gRPC is not
# fork-safe: DataLoader workers must not be forked from it (docs/torch.md).
FORK_SAFE = "forkserver"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 8, "mode": "elastic"}, "mode: 'elastic'"),
        ({"batch_size": 8, "prefetch": -1}, "prefetch"),
        ({"batch_size": 8, "rank": 4, "world_size": 2}, "rank 4"),
        ({"batch_size": 8, "timeout": 0}, "timeout"),
        ({"batch_size": 8, "local_reads": "yes"}, "local_reads"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(SpecError, match=message):
        FeederDataset("grpc://127.0.0.1:1", **kwargs)


def test_local_reads_reach_the_datasets_client():
    assert FeederDataset("grpc://127.0.0.1:1", batch_size=8)._client().local_reads is True
    off = FeederDataset("grpc://127.0.0.1:1", batch_size=8, local_reads=False)
    assert off._client().local_reads is False


def test_tensor_options_come_in_one_object():
    options = TensorOptions(nulls="fill", fill_value=-1)
    ds = FeederDataset("grpc://127.0.0.1:1", batch_size=8, tensors=options)
    assert ds.tensor_options is options
    assert FeederDataset("grpc://127.0.0.1:1", batch_size=8).tensor_options == TensorOptions()
    with pytest.raises(SpecError, match="nulls: 'zero'"):
        FeederDataset("grpc://127.0.0.1:1", batch_size=8, tensors=TensorOptions(nulls="zero"))
    with pytest.raises(SpecError, match="tensors: "):
        FeederDataset("grpc://127.0.0.1:1", batch_size=8, tensors={"nulls": "fill"})


def test_a_removed_tensor_keyword_names_its_replacement():
    with pytest.raises(TypeError, match=r"tensors=TensorOptions\(nulls='fill', fill_value=-1\)"):
        FeederDataset("grpc://127.0.0.1:1", batch_size=8, nulls="fill", fill_value=-1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bogus'\]"):
        FeederDataset("grpc://127.0.0.1:1", batch_size=8, bogus=1)


def test_state_before_iteration_and_load_state_dict_validation():
    ds = FeederDataset("grpc://127.0.0.1:1", batch_size=8, rank=1, world_size=2, job="j")
    ds.set_epoch(3)
    state = ds.state_dict()
    assert state["epoch"] == 3 and state["rows_consumed"] == 0 and state["rank"] == 1
    other = FeederDataset("grpc://127.0.0.1:1", batch_size=8, job="k")
    with pytest.raises(SpecError, match="job was 'j'"):
        other.load_state_dict(state)
    with pytest.raises(SpecError, match="version"):
        ds.load_state_dict({**state, "version": 99})
    ds.load_state_dict({**state, "epoch": 5, "rows_consumed": 16})
    assert ds.epoch == 5
    assert ds.state_dict()["rows_consumed"] == 16
    with pytest.raises(SpecError, match="epoch"):
        ds.set_epoch(-1)


def test_dataset_is_an_iterable_dataset():
    ds = FeederDataset("grpc://127.0.0.1:1", batch_size=8)
    assert isinstance(ds, torch.utils.data.IterableDataset)


# --- failures (each with its own feeder; these run before the module-scoped one exists) ----


@pytest.mark.spark
@pytest.mark.slow
def test_each_row_once_after_node_loss_mid_epoch_with_workers(spark, catalog):
    """SIGKILL one of two data nodes while a 2-worker DataLoader iterates: the epoch completes."""
    import os
    import signal

    from torch.utils.data import DataLoader

    from feeder.coordinator.session import serve
    from tests.feeder.tables import make_table

    rows = 4 * 25_000
    make_table(catalog, "test.nodeloss", files=4, rows_per_file=25_000, row_group_rows=5000)
    with serve("test.nodeloss", spark=spark, catalog=catalog, nodes=2) as feeder:
        feeder.wait_ready(180)
        ds = FeederDataset(
            feeder.endpoint,
            batch_size=100,
            columns=["id", "x", "name"],
            job="nodeloss",
            drop_last=False,
            seed=1,
            prefetch=1,
        )
        loader = DataLoader(
            ds, batch_size=None, num_workers=2, prefetch_factor=1, multiprocessing_context=FORK_SAFE
        )
        ids: list[int] = []
        killed = None
        for i, batch in enumerate(loader):
            ids.extend(batch["id"].tolist())
            if i == 3:
                victim = next(n for n in feeder.status()["nodes"] if n["alive"])
                killed = victim["pid"]
                os.kill(killed, signal.SIGKILL)
    assert killed is not None
    assert len(ids) == rows
    assert sorted(ids) == list(range(rows))


@pytest.mark.spark
@pytest.mark.slow
def test_lost_coordinator_mid_epoch_is_a_clear_error(spark, catalog):
    from feeder.coordinator.session import serve
    from tests.feeder.tables import make_table

    make_table(catalog, "test.coordloss", files=4, rows_per_file=25_000, row_group_rows=5000)
    feeder = serve("test.coordloss", spark=spark, catalog=catalog, nodes=1)
    try:
        feeder.wait_ready(180)
        # slice order: ranges stream batch by batch (this table is one MIX window, read whole)
        ds = FeederDataset(
            feeder.endpoint,
            batch_size=10,
            columns=["id"],
            timeout=5,
            prefetch=1,
            shuffle="slice",
        )
        it = iter(ds)
        assert len(next(it)["id"]) == 10
    finally:
        feeder.stop()
    with pytest.raises(FeederError):
        for _ in it:
            pass


# --- end to end: a real feeder (Spark local mode) on loopback ----------------------------

ROWS = 6000  # 2 files x 3000 rows, row groups of 500


def _rich_table(start: int, n: int) -> pa.Table:
    """``n`` rows with a unique ``id`` and one column per interesting Arrow type."""
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": pa.array(ids),
            "x": pa.array(ids * 0.5),
            "f32": pa.array(ids.astype(np.float32)),
            "i32": pa.array((ids % 1000).astype(np.int32)),
            "flag": pa.array(ids % 2 == 0),
            "ts": pa.array(ids * 1_000_000, type=pa.timestamp("us")),
            "day": pa.array((ids % 365).astype(np.int32), type=pa.int32()).cast(pa.date32()),
            "name": pa.array([f"n{i}" for i in ids]),
            "vec": pa.array([[float(i)] * int(i % 4) for i in ids], type=pa.list_(pa.float32())),
            "maybe": pa.array([None if i % 10 == 0 else int(i) for i in ids], type=pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory):
    """A feeder with one data node over ``test.torch`` (ROWS rows, unique ``id``, 12 slices)."""
    from feeder.coordinator.session import serve
    from jobs.catalog import load_catalog

    home = tmp_path_factory.mktemp("torch-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICEFEED_HOME", str(home))
        catalog = load_catalog()
        catalog.create_namespace("test")
        table = catalog.create_table(
            "test.torch",
            schema=_rich_table(0, 1).schema,
            properties={"write.parquet.row-group-limit": "500"},
        )
        for f in range(2):
            table.append(_rich_table(f * 3000, 3000))
        feeder = serve(
            "test.torch",
            spark=spark,
            catalog=catalog,
            nodes=1,
            cache_dir=home / "cache",
            slice_bytes=1,  # one slice per row group: 12 leases to share in dynamic mode
        )
        try:
            feeder.wait_ready(180)
            yield feeder
        finally:
            feeder.stop()


class HoldFirstBatch:
    """A batch transform: at its first batch, each DataLoader worker (it has its own copy)
    waits until every worker sharing ``barrier`` has one (an event, not a sleep)."""

    def __init__(self, barrier) -> None:
        self.barrier = barrier
        self.waited = False

    def __call__(self, batch):
        if not self.waited:
            self.waited = True
            self.barrier.wait(120)  # BrokenBarrierError: a worker never got a batch
        return batch


def _ids(loader) -> list[list[int]]:
    return [batch["id"].tolist() for batch in loader]


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_each_row_once_per_epoch_across_ranks_and_workers(served, mode):
    """Both ranks (2 DataLoader workers each) read the epoch at the same time: one thread
    per rank, joined with one deadline; no worker gets past its first batch until all four
    have one (a barrier in the batch transform), so neither rank can drain the dynamic
    queue while the other's workers are still starting."""
    import multiprocessing

    from torch.utils.data import DataLoader

    manager = multiprocessing.get_context("spawn").Manager()
    first_batches = manager.Barrier(4)

    run = uuid.uuid4().hex[:8]  # a fresh job: dynamic mode consumes (job, epoch) once
    loaders = []
    for rank in range(2):
        ds = FeederDataset(
            served.endpoint,
            batch_size=64,
            columns=["id", "x"],
            job=f"once-{mode}-{run}",
            mode=mode,
            rank=rank,
            world_size=2,
            drop_last=False,
            seed=11,
            # MIX windows of 256 rows: ~24 units to share (one default window holds it all)
            mix=MixParams(block_rows=32, window_rows=256),
            transform=HoldFirstBatch(first_batches),
        )
        loaders.append(
            DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=FORK_SAFE)
        )
    per_rank: list[list[list[int]]] = [[], []]
    errors: list[BaseException] = []

    def read(rank: int) -> None:
        try:
            per_rank[rank] = _ids(loaders[rank])  # starts its workers, reads the epoch
        except BaseException as exc:  # surfaced below: a thread's exception is not a failure
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(rank,)) for rank in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 240  # one deadline for both, well inside pytest's timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    manager.shutdown()
    assert not any(t.is_alive() for t in threads), "a rank did not finish its epoch in 240 s"
    assert errors == []
    all_ids = _flat(per_rank[0]) + _flat(per_rank[1])
    assert sorted(all_ids) == list(range(ROWS))
    for batches in per_rank:
        # at most one short batch per consumer (DataLoader worker)
        assert sum(len(b) != 64 for b in batches) <= 2
        # both ranks took part (read one after the other, the first would drain every
        # lease): each of its workers held a batch before any went on
        assert len(_flat(batches)) > 0
    if mode == "static":
        # 3000 rows per rank; workers get 23 whole batches + (23 batches + 56 rows)
        assert [len(b) for b in per_rank[0]].count(64) == 46
        assert len(per_rank[0]) == len(per_rank[1]) == 47


@pytest.mark.spark
@pytest.mark.slow
def test_static_ranks_yield_equal_batch_counts_with_drop_last(served):
    from torch.utils.data import DataLoader

    counts, seen = [], []
    for rank in range(3):
        ds = FeederDataset(
            served.endpoint,
            batch_size=100,
            columns=["id"],
            rank=rank,
            world_size=3,
            seed=2,
            drop_last=True,
        )
        batches = _ids(
            DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=FORK_SAFE)
        )
        counts.append(len(batches))
        assert len(ds) == len(batches)
        assert all(len(b) == 100 for b in batches)
        seen.extend(_flat(batches))
    assert counts == [20, 20, 20]
    assert len(seen) == len(set(seen)) == 6000


@pytest.mark.spark
@pytest.mark.slow
def test_without_drop_last_ranks_yield_equal_batch_counts_for_rows_that_do_not_divide(served):
    from torch.utils.data import DataLoader

    world = 7  # 6000 rows: 857.1 per rank, so ranks are padded to 858 (6 rows twice)
    per_rank = -(-ROWS // world)
    counts, seen = [], []
    for rank in range(world):
        ds = FeederDataset(
            served.endpoint, batch_size=100, columns=["id"], rank=rank, world_size=world, seed=2
        )
        assert ds.drop_last is False  # the default, as torch's DistributedSampler
        workers = 2 if rank in (0, world - 1) else 0
        context = FORK_SAFE if workers else None
        loader = DataLoader(
            ds, batch_size=None, num_workers=workers, multiprocessing_context=context
        )
        assert len(loader) == len(ds) == -(-per_rank // 100)
        batches = _ids(loader)
        counts.append(len(batches))
        assert sum(map(len, batches)) == per_rank
        # one short batch per rank (the last of its last worker): workers get whole batches
        assert sorted(map(len, batches)) == [per_rank % 100] + [100] * (len(batches) - 1)
        if not workers:
            assert len(batches[-1]) == per_rank % 100
        seen.extend(_flat(batches))
    assert counts == [9] * world
    assert set(seen) == set(range(ROWS)) and len(seen) == world * per_rank


class _LenInWorker(torch.utils.data.IterableDataset):
    """Yields, from each DataLoader worker, ``len(ds)`` there and then the ids it reads."""

    def __init__(self, ds: FeederDataset) -> None:
        self.ds = ds

    def __iter__(self):
        worker = torch.utils.data.get_worker_info().id
        yield {"worker": worker, "len": len(self.ds)}
        for batch in self.ds:
            yield {"worker": worker, "ids": batch["id"]}


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize(("world_size", "drop_last"), [(1, False), (3, True), (4, False)])
def test_len_is_what_the_iteration_yields_per_rank_and_per_worker(served, world_size, drop_last):
    from torch.utils.data import DataLoader

    rank = world_size - 1
    ds = FeederDataset(
        served.endpoint,
        batch_size=64,
        columns=["id"],
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        seed=3,
    )
    main = _ids(ds)
    assert len(ds) == len(main) > 0
    loader = DataLoader(
        _LenInWorker(ds), batch_size=None, num_workers=2, multiprocessing_context=FORK_SAFE
    )
    lengths, yielded = {}, {0: 0, 1: 0}
    for item in loader:
        if "len" in item:
            lengths[item["worker"]] = item["len"]
        else:
            yielded[item["worker"]] += 1
    assert lengths == yielded, "a worker's len() is not what it yields"
    assert sum(yielded.values()) == len(main)


@pytest.mark.spark
@pytest.mark.slow
def test_len_after_a_mid_epoch_resume_is_what_is_left(served):
    ds = FeederDataset(served.endpoint, batch_size=64, columns=["id"], seed=4, prefetch=0)
    total = len(ds)
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = ds.state_dict()
    it.close()
    resumed = FeederDataset(served.endpoint, batch_size=64, columns=["id"], seed=4, prefetch=0)
    resumed.load_state_dict(state)
    assert len(resumed) == total - 5
    assert len(_ids(resumed)) == total - 5
    assert len(resumed) == total  # the next iteration is a whole epoch again


def test_len_in_dynamic_mode_is_a_type_error_as_for_unsized_iterables():
    ds = FeederDataset("grpc://127.0.0.1:1", batch_size=8, mode="dynamic")
    with pytest.raises(TypeError, match="len\\(\\) of a FeederDataset in dynamic mode is unknown"):
        len(ds)


@pytest.mark.spark
@pytest.mark.slow
def test_epochs_differ_and_the_same_seed_repeats(served):
    ds = FeederDataset(served.endpoint, batch_size=500, columns=["id"], seed=5, prefetch=0)
    first = _flat(_ids(ds))
    ds.set_epoch(1)
    second = _flat(_ids(ds))
    ds.set_epoch(0)
    again = _flat(_ids(ds))
    other_seed = _flat(_ids(FeederDataset(served.endpoint, batch_size=500, columns=["id"], seed=6)))
    assert sorted(first) == sorted(second) == list(range(ROWS))
    assert first != second
    assert first == again
    assert first != other_seed
    unshuffled = FeederDataset(served.endpoint, batch_size=500, columns=["id"], shuffle=False)
    assert sorted(_flat(_ids(unshuffled))) == list(range(ROWS))


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_with_stateful_dataloader(served, workers):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make():
        ds = FeederDataset(
            served.endpoint, batch_size=50, columns=["id"], job="resume", seed=9, drop_last=False
        )
        ds.set_epoch(4)
        context = FORK_SAFE if workers else None
        return StatefulDataLoader(
            ds, batch_size=None, num_workers=workers, multiprocessing_context=context
        )

    loader = make()
    before = []
    for i, batch in enumerate(loader):
        before.extend(batch["id"].tolist())
        if i == 36:
            break
    state = loader.state_dict()
    del loader
    resumed = make()
    resumed.load_state_dict(state)
    after = _flat(_ids(resumed))
    assert len(before) == 37 * 50
    assert after, "resume delivered nothing"
    assert not set(before) & set(after)
    assert sorted(before + after) == list(range(ROWS))


@pytest.mark.spark
@pytest.mark.slow
def test_resume_with_another_batch_size_mid_epoch_is_a_clear_error(served):
    """Another world size resumes elastically (test_elastic_resume.py); another
    batch size, seed or order does not."""
    ds = FeederDataset(served.endpoint, batch_size=50, columns=["id"], rank=0, world_size=2)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    it.close()
    assert state["rows_consumed"] == 50
    other = FeederDataset(served.endpoint, batch_size=40, columns=["id"], rank=0, world_size=3)
    other.load_state_dict(state)
    with pytest.raises(SpecError, match="batch_size was 50"):
        next(iter(other))


@pytest.mark.spark
@pytest.mark.slow
def test_breaking_out_stops_the_prefetch_thread(served):
    def prefetchers() -> int:
        return sum(t.name == "feeder-prefetch" and t.is_alive() for t in threading.enumerate())

    before = prefetchers()  # read-ahead threads of earlier tests can only end meanwhile
    # slice order: the stream is still running at close (this table is one MIX window)
    ds = FeederDataset(served.endpoint, batch_size=10, columns=["id"], prefetch=4, shuffle="slice")
    it = iter(ds)
    assert len(next(it)["id"]) == 10
    assert prefetchers() >= 1
    it.close()
    assert prefetchers() <= before


@pytest.mark.spark
@pytest.mark.slow
def test_next_epoch_read_ahead_gives_the_same_rows_as_a_fresh_read(served):
    def ds():
        return FeederDataset(served.endpoint, batch_size=256, columns=["id"], seed=21)

    warm = ds()
    epoch0 = _flat(_ids(warm))
    assert warm._ahead is not None, "no read-ahead after a full epoch"
    warm.set_epoch(1)
    epoch1 = _flat(_ids(warm))
    fresh = ds()
    fresh.set_epoch(1)
    assert epoch1 == _flat(_ids(fresh))
    warm.set_epoch(1)  # the same epoch again: the read-ahead (epoch 2) is not used
    assert _flat(_ids(warm)) == epoch1 != epoch0
    warm.close()
    fresh.close()
    assert warm._ahead is None


@pytest.mark.slow
def test_unreachable_coordinator_is_a_clear_error_not_a_hang():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ds = FeederDataset(f"grpc://127.0.0.1:{port}", batch_size=8, timeout=3)
    with pytest.raises(FeederError, match="unreachable"):
        next(iter(ds))


@pytest.mark.spark
@pytest.mark.slow
def test_dtypes_through_the_feeder(served):
    ds = FeederDataset(
        served.endpoint,
        batch_size=100,
        shuffle=False,
        tensors=TensorOptions(nulls="fill", fill_value=-1),
    )
    batch = next(iter(ds))
    ids = batch["id"]
    assert ids.dtype == torch.int64 and ids.shape == (100,)
    assert torch.equal(batch["x"], ids.double() * 0.5)
    assert batch["f32"].dtype == torch.float32
    assert batch["i32"].dtype == torch.int32
    assert torch.equal(batch["flag"], ids % 2 == 0)
    assert batch["ts"].dtype == torch.int64 and torch.equal(batch["ts"], ids * 1_000_000)
    assert batch["day"].dtype == torch.int32
    assert batch["name"] == [f"n{i}" for i in ids.tolist()]
    assert batch["vec"].shape == (100, 3) and torch.equal(batch["vec_lengths"], ids % 4)
    expected = torch.where(ids % 10 == 0, torch.tensor(-1), ids)
    assert torch.equal(batch["maybe"], expected)


@pytest.mark.spark
@pytest.mark.slow
def test_nulls_are_a_clear_error_by_default_through_the_feeder(served):
    ds = FeederDataset(served.endpoint, batch_size=100, columns=["id", "maybe"])
    with pytest.raises(FeederError, match=r"column 'maybe' has .* null"):
        next(iter(ds))


@pytest.mark.spark
@pytest.mark.slow
def test_a_training_process_reads_the_feeder_without_loading_spark_or_iceberg(served):
    # a separate interpreter, as a PyTorch worker pod: import, iterate, then look
    probe = (
        "import sys\n"
        "from feeder.torch.dataset import FeederDataset\n"
        f"ds = FeederDataset({served.endpoint!r}, batch_size=100, columns=['id'])\n"
        "rows = sum(len(b['id']) for b in ds)\n"
        "print(rows, sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'pyiceberg'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{ROWS} []", result.stdout


class _SharedInWorker(torch.utils.data.IterableDataset):
    """Yields each batch of ``ds`` with ``"_unshared"``: the tensors that were not in
    shared memory in the DataLoader worker, just before the worker sent the batch."""

    def __init__(self, ds: FeederDataset) -> None:
        self.ds = ds

    def __iter__(self):
        assert torch.utils.data.get_worker_info() is not None
        for batch in self.ds:
            unshared = [k for k, v in batch.items() if torch.is_tensor(v) and not v.is_shared()]
            yield {**batch, "_unshared": unshared}


def _by_id(batches: list[dict]) -> dict[str, list]:
    """Every column of ``batches`` as one list, rows ordered by ``id``."""
    ids = [i for b in batches for i in b["id"].tolist()]
    order = sorted(range(len(ids)), key=ids.__getitem__)
    out = {}
    for key in batches[0]:
        if key == "_unshared":
            continue
        values = [v for b in batches for v in b[key]]
        out[key] = [values[i].tolist() if torch.is_tensor(values[i]) else values[i] for i in order]
    return out


@pytest.mark.spark
@pytest.mark.slow
def test_worker_batches_are_built_in_shared_memory_and_arrive_intact_pinned(served):
    """In a DataLoader worker every tensor of a batch is in shared memory before it is
    sent (the hand-over passes a handle, no copy); with ``pin_memory=True`` the batches
    arrive equal, row for row, to what the main process reads with its zero-copy views."""
    import warnings

    from torch.utils.data import DataLoader

    def dataset(job: str) -> FeederDataset:
        return FeederDataset(
            served.endpoint,
            batch_size=100,
            job=job,
            shuffle=False,
            tensors=TensorOptions(nulls="fill", fill_value=-1),
        )

    in_main = list(dataset("shm-main"))
    assert not any(v.is_shared() for b in in_main for v in b.values() if torch.is_tensor(v))
    loader = DataLoader(
        _SharedInWorker(dataset("shm-workers")),
        batch_size=None,
        num_workers=2,
        pin_memory=True,
        multiprocessing_context=FORK_SAFE,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_workers = list(loader)
    assert from_workers and all(b["_unshared"] == [] for b in from_workers)
    tensors = [v for b in from_workers for v in b.values() if torch.is_tensor(v)]
    assert {"x", "f32", "flag", "ts", "vec", "vec_lengths", "maybe"} <= set(from_workers[0])
    if torch.accelerator.is_available():  # the DataLoader's pin thread copied them
        assert all(t.is_pinned() for t in tensors)
    else:  # a CPU-only build: torch turns pinning off, and says so
        assert any("no accelerator" in str(w.message) for w in caught)
        assert all(t.is_shared() for t in tensors)  # received by handle, not copied
    got, want = _by_id(from_workers), _by_id(in_main)
    assert got["id"] == list(range(ROWS))
    assert got == want


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [True, False])
def test_feeder_dataloader_hands_groups_over_and_yields_every_batch_once(served, shuffle):
    """FeederDataLoader with 2 workers: every worker batch crosses to the main process in
    groups (one shared segment per group), the loader yields them one by one: the same
    batches as a plain DataLoader's, every row once, ``len`` equal to what it yields."""
    import warnings

    from torch.utils.data import DataLoader

    from feeder.torch import FeederDataLoader, shm_ring
    from feeder.torch.handover import BatchGroup, SharedGroup

    def dataset(job: str) -> FeederDataset:
        return FeederDataset(
            served.endpoint,
            batch_size=100,
            columns=["id", "x", "name"],
            job=job,
            shuffle=shuffle,
            seed=4,
            drop_last=False,
            mix=MixParams(block_rows=32, window_rows=1024),
        )

    run = uuid.uuid4().hex[:8]
    plain = list(
        DataLoader(
            dataset(f"plain-{run}"),
            batch_size=None,
            num_workers=2,
            multiprocessing_context=FORK_SAFE,
        )
    )
    ds = dataset(f"grouped-{run}")
    loader = FeederDataLoader(ds, num_workers=2, handover_batches=7, pin_memory=True)
    assert loader.multiprocessing_context is not None  # forkserver unless told otherwise
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only build turns pin_memory off
        raw = [item for item in DataLoader.__iter__(loader)]  # what crossed: the groups
        got = list(loader)
    assert raw and all(isinstance(item, BatchGroup | SharedGroup) for item in raw)
    # the workers wrote the groups into segments of their own, reused once released
    assert any(isinstance(item, SharedGroup) for item in raw)
    assert max(len(g) for g in raw) == 7
    crossed = sum(len(g) for g in raw)
    del raw  # dropped unread: their segments go back to the (finished) workers
    # the workers are gone with their iteration, and so are their segment files
    others = [
        name
        for name in os.listdir(shm_ring.SHM_DIR)
        if name.startswith("icefeed-handover-")
        and not name.startswith(f"icefeed-handover-{os.getpid()}-")
    ]
    assert others == []
    assert crossed == len(got) == len(loader) == len(plain)
    assert sorted(_flat([b["id"].tolist() for b in got])) == list(range(ROWS))
    # each worker's batches are the plain DataLoader's, in the worker's own order
    key = lambda b: b["id"].tolist()  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, plain))
    by_first = {b["id"][0].item(): b for b in plain}
    for batch in got:
        twin = by_first[batch["id"][0].item()]
        assert torch.equal(batch["x"], twin["x"]) and batch["name"] == twin["name"]
    if shuffle:  # set_epoch on the dataset reaches the loader's workers
        ds.set_epoch(1)
        again = _flat([b["id"].tolist() for b in loader])
        assert sorted(again) == list(range(ROWS))
        assert again != _flat([b["id"].tolist() for b in got])


def test_feeder_dataloader_refuses_what_does_not_fit():
    from feeder.torch import FeederDataLoader

    ds = FeederDataset("grpc://127.0.0.1:1", batch_size=8)
    with pytest.raises(SpecError, match="not list"):
        FeederDataLoader([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="handover_batches"):
        FeederDataLoader(ds, handover_batches=0)
    with pytest.raises(SpecError, match="batch_size, sampler"):
        FeederDataLoader(ds, batch_size=4, sampler=[0])
    loader = FeederDataLoader(ds)  # no workers: read in this process, nothing packed
    assert ds.handover_batches == 1 and loader.num_workers == 0
