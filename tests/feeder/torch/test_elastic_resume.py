"""Elastic resume through a real feeder: a mid-epoch state of 2 ranks x 2 DataLoader workers
resumes at 1 rank x 1 worker and at 3 ranks x 2 workers, every row exactly once."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from feeder.torch.dataset import FeederDataset
from feeder.torch.resume import merge_worker_states
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import embedded_catalog, make_table

ROWS = 6000
BATCH = 64
FORK_SAFE = "forkserver"


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    home = tmp_path_factory.mktemp("elastic-home")
    catalog = embedded_catalog(home, "elastic")
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    with local_feeder(catalog, cache_dir=home / "cache", nodes=1) as running:
        yield running


class _WithStates(torch.utils.data.IterableDataset):
    """Yields each batch's ids with the worker's resume state right after that batch
    (what torchdata's StatefulDataLoader keeps per worker)."""

    def __init__(self, ds: FeederDataset) -> None:
        self.ds = ds

    def __iter__(self):
        for batch in self.ds:
            yield {"ids": batch["id"], "state": self.ds.state_dict()}


def _dataset(feed, shuffle, *, rank: int, world_size: int) -> FeederDataset:
    ds = FeederDataset(
        feed.endpoint,
        batch_size=BATCH,
        columns=["id"],
        job="elastic",
        shuffle=shuffle,
        seed=5,
        rank=rank,
        world_size=world_size,
    )
    ds.set_epoch(3)
    return ds


def _save_mid_epoch(feed, shuffle, steps: int) -> tuple[list[int], list[list[dict]]]:
    """2 ranks x 2 workers step in lockstep for ``steps`` batches; return the ids
    delivered and each rank's worker states."""
    loaders = [
        iter(
            DataLoader(
                _WithStates(_dataset(feed, shuffle, rank=rank, world_size=2)),
                batch_size=None,
                num_workers=2,
                multiprocessing_context=FORK_SAFE,
            )
        )
        for rank in range(2)
    ]
    delivered: list[int] = []
    states: list[dict[int, dict]] = [{}, {}]
    for _ in range(steps):
        for rank, loader in enumerate(loaders):
            item = next(loader)
            delivered.extend(item["ids"].tolist())
            states[rank][item["state"]["worker"]] = item["state"]
    for loader in loaders:
        loader._shutdown_workers()
    return delivered, [list(s.values()) for s in states]


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [False, "slice", True])
def test_two_by_two_resumes_at_one_by_one_and_three_by_two(feed, shuffle):
    before, states = _save_mid_epoch(feed, shuffle, steps=15)
    assert len(before) == 2 * 15 * BATCH and len(set(before)) == len(before)
    merged = [merge_worker_states(s) for s in states]
    assert merged[0]["delivered"] == merged[1]["delivered"] == [8 * BATCH, 7 * BATCH]

    # 1 rank, no DataLoader workers
    single = _dataset(feed, shuffle, rank=0, world_size=1)
    single.load_state_dict(merged[1])  # any rank's state: all ranks stepped together
    expected = len(single)
    after = [batch["id"].tolist() for batch in single]
    assert len(after) == expected
    assert sorted(before + [i for b in after for i in b]) == list(range(ROWS))

    # 3 ranks x 2 workers, each rank given its saved workers' states as a list
    remaining = ROWS - len(before)
    per_rank_rows = -(-remaining // 3)
    counts, lens, seen = [], [], []
    for rank in range(3):
        ds = _dataset(feed, shuffle, rank=rank, world_size=3)
        ds.load_state_dict(states[rank % 2])
        lens.append(len(ds))
        loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=FORK_SAFE)
        batches = [batch["id"].tolist() for batch in loader]
        counts.append(len(batches))
        rows = [i for b in batches for i in b]
        assert len(rows) == per_rank_rows
        seen.extend(rows)
    assert len(set(counts)) == 1, f"unequal batch counts per rank: {counts}"
    assert lens == counts
    assert set(before) | set(seen) == set(range(ROWS))
    assert not set(before) & set(seen)
    # only DistributedSampler padding repeats rows: 3 * ceil(R / 3) - R of them
    assert len(seen) == remaining + (3 * per_rank_rows - remaining)
    assert len(set(seen)) == remaining


@pytest.mark.slow
def test_a_state_saved_after_an_elastic_resume_resumes_at_its_own_shape(feed):
    """Rank state (no workers) at 2 ranks -> 3 ranks, saved again mid-way, resumed at 3."""
    before: list[int] = []
    rank_states = []
    for rank in range(2):
        ds = _dataset(feed, True, rank=rank, world_size=2)
        it = iter(ds)
        for _ in range(5):
            before.extend(next(it)["id"].tolist())
        rank_states.append(ds.state_dict())
        it.close()
    seen: list[int] = []
    for rank in range(3):
        ds = _dataset(feed, True, rank=rank, world_size=3)
        ds.load_state_dict(rank_states[0])
        it = iter(ds)
        seen.extend(next(it)["id"].tolist())
        state = ds.state_dict()
        it.close()
        assert state["resume_from"]["delivered"] == [5 * BATCH]
        again = _dataset(feed, True, rank=rank, world_size=3)
        again.load_state_dict(state)
        seen.extend(i for batch in again for i in batch["id"].tolist())
    remaining = ROWS - len(before)
    assert set(before) | set(seen) == set(range(ROWS))
    assert not set(before) & set(seen)
    assert len(seen) == 3 * -(-remaining // 3)


def test_the_coordinator_refuses_progress_beyond_a_piece_naming_the_field(feed):
    from feeder.client.client import FeederClient
    from feeder.client.request import ReadRequest
    from feeder.protocol.elastic import Progress
    from jobs.errors import SpecError

    progress = Progress(world_size=2, num_workers=1, unit=64, drop_last=False, delivered=(3001,))
    with FeederClient(feed.endpoint, job="elastic") as client:
        with pytest.raises(SpecError, match=r"resume_from.delivered\[0\]: 3001 rows exceed"):
            client.plan(request=ReadRequest(unit=64, resume_from=progress))
        done = Progress(world_size=2, num_workers=1, unit=64, drop_last=False, delivered=(3000,))
        info = client.plan(request=ReadRequest(unit=64, resume_from=done, shuffle="off"))
        assert info.total_records == 0  # the old shape delivered the whole epoch
