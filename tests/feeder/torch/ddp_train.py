"""Tiny DDP training run fed by a FeederDataset; started by ``torchrun --nproc-per-node 2``.

Used by ``tests/feeder/torch/test_ddp.py``. Each rank trains a linear model on
``x -> id`` for ``--epochs`` epochs (gloo, CPU), then writes
``<out>/rank<r>.json`` with the ids it saw per epoch, its batch count per
epoch, and its final parameters (equal on both ranks iff gradients synced).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from feeder.torch.dataset import FeederDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=120))
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    # rank and world size come from torch.distributed (not passed in)
    ds = FeederDataset(
        args.endpoint, batch_size=args.batch_size, columns=["id", "x"], job="ddp", seed=3
    )
    loader = DataLoader(ds, batch_size=None, num_workers=args.workers)
    seen: list[list[int]] = []
    batches: list[int] = []
    lengths: list[int] = []  # len(loader) before each epoch, in the main process
    for epoch in range(args.epochs):
        ds.set_epoch(epoch)
        lengths.append(len(loader))  # then the DataLoader forks its workers
        ids: list[int] = []
        n = 0
        for batch in loader:
            x = batch["x"].float().unsqueeze(1)
            y = batch["id"].float().unsqueeze(1)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # all-reduce: hangs if the ranks' step counts differ
            optimizer.step()
            ids.extend(batch["id"].tolist())
            n += 1
        seen.append(ids)
        batches.append(n)
    dist.barrier()
    params = [p.detach().flatten().tolist() for p in model.module.parameters()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world_size": dist.get_world_size(),
                "env_rank": os.environ.get("RANK"),
                "ids": seen,
                "batches": batches,
                "lengths": lengths,
                "params": params,
            }
        )
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
