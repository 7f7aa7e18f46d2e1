"""The trainer recipes of docs/torch.md (*Trainer frameworks*), run as written against a
local feeder: each recipe's first code block is executed from the doc itself
(``doc_recipes.recipe``); the Accelerate one also on 2 real processes (torchrun, gloo)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from feeder.torch.dataset import FeederDataset
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import embedded_catalog, make_table
from tests.feeder.torch.doc_recipes import ACCELERATE, LIGHTNING, recipe
from tests.feeder.torch.torchrun import torchrun

ROWS = 3000
BATCH = 250
SEED = 3


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    home = tmp_path_factory.mktemp("trainers-home")
    catalog = embedded_catalog(home, "trainers")
    make_table(catalog, files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    with local_feeder(catalog, cache_dir=home / "cache", nodes=1) as running:
        yield running


def _direct_batches(endpoint: str, epoch: int) -> list[list[int]]:
    """Epoch ``epoch``'s batches of ids, read by a plain FeederDataset (no framework)."""
    ds = FeederDataset(endpoint, batch_size=BATCH, columns=["id"], job="direct", seed=SEED)
    ds.set_epoch(epoch)
    batches = [batch["id"].tolist() for batch in ds]
    ds.close()
    return batches


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def _features(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return (batch["x"].float() / ROWS).unsqueeze(1)


def test_the_doc_has_both_recipes():
    assert {"FeederDataModule", "feeder_trainer"} <= set(recipe(LIGHTNING))
    assert "feeder_loader" in recipe(ACCELERATE)


@pytest.mark.parametrize("workers", [0, 2])
def test_lightning_datamodule_trains_on_every_row_once_per_epoch_in_a_new_order(feed, workers):
    lightning = pytest.importorskip("lightning")
    ns = recipe(LIGHTNING)
    seen: dict[int, list[list[int]]] = defaultdict(list)

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            seen[self.current_epoch].append(batch["id"].tolist())
            x = _features(batch)
            return torch.nn.functional.mse_loss(self.lin(x), 2 * x)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Tiny()
    before = model.lin.weight.detach().clone()
    data = ns["FeederDataModule"](
        feed.endpoint,
        batch_size=BATCH,
        num_workers=workers,
        columns=["id", "x"],
        job=f"lightning-{workers}",
        seed=SEED,
    )
    trainer = ns["feeder_trainer"](
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)

    assert sorted(seen) == [0, 1]
    for epoch in (0, 1):
        assert sorted(_flat(seen[epoch])) == list(range(ROWS))  # every row once
        direct = _direct_batches(feed.endpoint, epoch)
        if workers == 0:
            assert seen[epoch] == direct  # epoch e's order: set_epoch(e) took effect
        else:  # workers take whole batches of the same cut; the DataLoader interleaves them
            assert sorted(seen[epoch]) == sorted(direct)
    assert _flat(seen[0]) != _flat(seen[1])
    assert not torch.equal(model.lin.weight.detach(), before)  # it trained


def _accelerate_epochs(accelerator, ds, loader, epochs: int) -> dict[int, list[list[int]]]:
    """The doc's training loop (second Accelerate block) with a tiny model; ids per epoch."""
    from accelerate.utils import send_to_device

    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    seen: dict[int, list[list[int]]] = defaultdict(list)
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            batch = send_to_device(batch, accelerator.device)
            seen[epoch].append(batch["id"].tolist())
            x = _features(batch)
            loss = torch.nn.functional.mse_loss(model(x), 2 * x)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    return seen


def test_accelerate_loader_trains_on_every_row_once_per_epoch_in_a_new_order(feed):
    accelerate = pytest.importorskip("accelerate")
    ns = recipe(ACCELERATE)
    accelerator = accelerate.Accelerator(cpu=True)
    ds, loader = ns["feeder_loader"](
        accelerator, feed.endpoint, batch_size=BATCH, columns=["id", "x"], job="acc", seed=SEED
    )
    assert (ds.rank, ds.world_size) == (accelerator.process_index, accelerator.num_processes)
    seen = _accelerate_epochs(accelerator, ds, loader, epochs=2)
    for epoch in (0, 1):
        assert seen[epoch] == _direct_batches(feed.endpoint, epoch)
        assert sorted(_flat(seen[epoch])) == list(range(ROWS))
    assert _flat(seen[0]) != _flat(seen[1])
    ds.close()


def test_accelerate_prepare_on_one_process_changes_no_rows_but_sets_its_own_epoch(feed):
    """The doc's claims for one process: a prepared loader yields the same batches, but
    calls the dataset's set_epoch itself with its own count of iterations (0, 1, ...)."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.data_loader import DataLoaderDispatcher

    ns = recipe(ACCELERATE)
    accelerator = accelerate.Accelerator(cpu=True)
    ds, loader = ns["feeder_loader"](
        accelerator, feed.endpoint, batch_size=BATCH, columns=["id"], job="prep1", seed=SEED
    )
    prepared = accelerator.prepare(loader)
    assert isinstance(prepared, DataLoaderDispatcher)  # the default for an IterableDataset
    ds.set_epoch(1)
    assert [b["id"].tolist() for b in prepared] == _direct_batches(feed.endpoint, 0)  # not 1
    assert ds.epoch == 0
    assert [b["id"].tolist() for b in prepared] == _direct_batches(feed.endpoint, 1)
    prepared.set_epoch(0)
    assert [b["id"].tolist() for b in prepared] == _direct_batches(feed.endpoint, 0)
    ds.close()


def test_accelerate_prepare_for_two_processes_shards_the_sharded_dataset_again(feed):
    """What ``prepare`` does to the recipe's loader on 2 processes without dispatching:
    it wraps the (already rank-sharded) dataset in IterableDatasetShard, which fails at
    the first batch with batch_size=None (docs/torch.md, *Hugging Face Accelerate*)."""
    pytest.importorskip("accelerate")
    from accelerate.data_loader import IterableDatasetShard, prepare_data_loader

    ds = FeederDataset(
        feed.endpoint, batch_size=BATCH, columns=["id"], job="prep2", rank=0, world_size=2
    )
    loader = DataLoader(ds, batch_size=None)
    prepared = prepare_data_loader(
        loader, num_processes=2, process_index=0, dispatch_batches=False, put_on_device=False
    )
    assert isinstance(prepared.dataset, IterableDatasetShard)
    assert prepared.dataset.dataset is ds
    assert (prepared.dataset.num_processes, prepared.dataset.process_index) == (2, 0)
    with pytest.raises(TypeError):
        next(iter(prepared))
    ds.close()


@pytest.mark.slow
def test_accelerate_recipe_on_two_processes_reads_each_row_once_and_prepare_would_not(
    feed, tmp_path
):
    """2 real processes (Accelerate's MULTI_CPU): the recipe's loaders share every epoch
    exactly once between the processes and the models stay in sync; a loader passed
    through ``accelerator.prepare`` (dispatching, the default) gives the processes only
    rank 0's share of the epoch (docs/torch.md, *Hugging Face Accelerate*)."""
    pytest.importorskip("accelerate")
    out = tmp_path / "out"
    proc = torchrun(
        Path(__file__).with_name("accelerate_train.py"),
        ["--endpoint", feed.endpoint, "--out", str(out), "--batch-size", str(BATCH)],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["process_index"], r["num_processes"]) for r in ranks] == [(0, 2), (1, 2)]
    assert ranks[0]["distributed_type"] == "DistributedType.MULTI_CPU"
    for epoch in range(2):
        a, b = (r["ids"][epoch] for r in ranks)
        assert len(a) == len(b) == ROWS // 2
        assert sorted(a + b) == list(range(ROWS)), "not every row exactly once"
    assert ranks[0]["ids"][0] != ranks[0]["ids"][1]
    assert ranks[0]["params"] == ranks[1]["params"], "gradients were not synchronised"
    # through prepare: process 0's dataset (rank 0 of 2) is the only one read
    prepared = [set(r["via_prepare"]) for r in ranks]
    assert not prepared[0] & prepared[1]
    assert len(prepared[0] | prepared[1]) == ROWS // 2  # half the epoch never arrives
