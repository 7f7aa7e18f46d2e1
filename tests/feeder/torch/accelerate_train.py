"""The Accelerate recipe of docs/torch.md on real processes; started by
``torchrun --nproc-per-node 2`` (Accelerate then runs MULTI_CPU over gloo).

Used by ``tests/feeder/torch/test_trainers.py``. Each process trains a linear model
with the doc's loop for 2 epochs, then reads one epoch through ``accelerator.prepare``
of a second recipe loader (what the doc says not to do), and writes
``<out>/rank<r>.json``: its process index and count, Accelerate's distributed type,
the ids it trained on per epoch, the ids the prepared loader gave it, its parameters.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from doc_recipes import ACCELERATE, recipe  # this script's folder is first on sys.path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args()
    feeder_loader = recipe(ACCELERATE)["feeder_loader"]

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    dataset, loader = feeder_loader(
        accelerator, args.endpoint, batch_size=args.batch_size, columns=["id", "x"], job="acc2"
    )
    model, optimizer = accelerator.prepare(model, optimizer)  # the model and optimizer only
    seen: list[list[int]] = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        seen.append([])
        for batch in loader:
            batch = send_to_device(batch, accelerator.device)
            seen[-1] += batch["id"].tolist()
            x = (batch["x"].float() / 1000).unsqueeze(1)
            loss = torch.nn.functional.mse_loss(model(x), 2 * x)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    dataset.close()

    other, other_loader = feeder_loader(
        accelerator, args.endpoint, batch_size=args.batch_size, columns=["id"], job="acc2-prep"
    )
    prepared = accelerator.prepare(other_loader)  # what the doc says not to do
    via_prepare = [i for batch in prepared for i in batch["id"].tolist()]
    other.close()

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "process_index": accelerator.process_index,
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "ids": seen,
        "via_prepare": via_prepare,
        "params": [p.detach().flatten().tolist() for p in model.parameters()],
    }
    (args.out / f"rank{accelerator.process_index}.json").write_text(json.dumps(result))
    accelerator.end_training()


if __name__ == "__main__":
    main()
