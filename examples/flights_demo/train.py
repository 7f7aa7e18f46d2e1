"""Train the late-arrival MLP from a feeder and score it on the held-out days.

Job ``train`` reads the feeder's cache shuffled (a new order each epoch) and
trains on every day but the held-out ones; job ``eval`` reads the same cache in
order and scores the held-out days after each epoch; job ``throughput`` is one
read-only pass, to compare the feed rate with and without a model step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from examples.flights_demo.model import build_model, encode, is_holdout, roc_auc
from examples.flights_demo.report import EpochResult
from jobs.errors import SpecError

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from examples.flights_demo.config import DemoConfig
    from examples.flights_demo.stages import Stages


@dataclass(frozen=True)
class _Scores:
    loss: float
    accuracy: float
    auc: float
    rows: int
    late_share: float


def _evaluate(model: torch.nn.Module, endpoint: str, *, batch_size: int, epoch: int) -> _Scores:
    """Loss, accuracy and AUC on the held-out days (job ``eval``, in table order)."""
    import torch

    from feeder.torch.dataset import FeederDataset

    dataset = FeederDataset(
        endpoint, batch_size=batch_size, job="eval", shuffle=False, drop_last=False
    )
    dataset.set_epoch(epoch)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    total, rows, labels, scores = 0.0, 0, [], []
    model.eval()
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dataset, batch_size=None):
            keep = is_holdout(batch["day"])
            if not bool(keep.any()):
                continue
            inputs = encode(batch)
            logits = model(inputs["dense"][keep], inputs["cats"][keep])
            y = inputs["y"][keep]
            total += float(loss_fn(logits, y))
            rows += int(y.numel())
            labels.append(y.numpy())
            scores.append(logits.numpy())
    model.train()
    if rows == 0:
        raise SpecError("no held-out rows: the sample is too small (lower --sample-every)")
    y_all, s_all = np.concatenate(labels), np.concatenate(scores)
    accuracy = float(((s_all > 0) == (y_all > 0.5)).mean())
    return _Scores(total / rows, accuracy, roc_auc(y_all > 0.5, s_all), rows, float(y_all.mean()))


def train(
    config: DemoConfig, endpoint: str, rows: int, console: Console, stages: Stages
) -> tuple[torch.nn.Module, list[EpochResult], dict[str, Any]]:
    """Train ``config.epochs`` epochs from the feeder at ``endpoint``, scoring after each.

    Args:
        config: Epochs, batch size and seed.
        endpoint: The feeder's Flight endpoint.
        rows: Rows the feeder serves (sizes the progress bar).
        console: Where the progress bars go.
        stages: Adds the seconds of ``train`` and ``evaluate``.

    Returns:
        The model, one result per epoch, and facts about the model and validation set.

    Raises:
        SpecError: no held-out rows (a sample too small).
    """
    import torch

    model = build_model(config.seed)
    # A ~6k-parameter model: intra-op threads only add synchronisation and compete
    # with the data nodes for the same cores (measured: 1 thread is ~4x faster here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _epochs(config, endpoint, rows, console, stages, model)
    finally:
        torch.set_num_threads(threads)


def _epochs(
    config: DemoConfig,
    endpoint: str,
    rows: int,
    console: Console,
    stages: Stages,
    model: torch.nn.Module,
) -> tuple[torch.nn.Module, list[EpochResult], dict[str, Any]]:
    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from feeder.torch.dataset import FeederDataset

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dataset = FeederDataset(
        endpoint, batch_size=config.batch_size, job="train", seed=config.seed, drop_last=True
    )  # whole batches: a short last one could hold only held-out rows (an empty loss)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    steps = rows // config.batch_size
    results: list[EpochResult] = []
    scores: _Scores | None = None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        for epoch in range(config.epochs):
            task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps, info="")
            dataset.set_epoch(epoch)
            started, seen, loss_sum, loss_rows = time.monotonic(), 0, 0.0, 0
            with stages("train"):
                for batch in loader:
                    keep = ~is_holdout(batch["day"])
                    seen += int(batch["day"].numel())
                    inputs = encode(batch)
                    y = inputs["y"][keep]
                    logits = model(inputs["dense"][keep], inputs["cats"][keep])
                    loss = loss_fn(logits, y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.item() * int(y.numel())
                    loss_rows += int(y.numel())
                    rate = seen / max(time.monotonic() - started, 1e-9)
                    info = f"loss {loss_sum / max(loss_rows, 1):.4f}  {rate:,.0f} rows/s"
                    progress.update(task, advance=1, info=info)
            seconds = time.monotonic() - started
            with stages("evaluate"):
                scores = _evaluate(model, endpoint, batch_size=config.batch_size * 4, epoch=epoch)
            train_loss = loss_sum / max(loss_rows, 1)
            progress.update(
                task,
                info=f"loss {train_loss:.4f}  val {scores.loss:.4f}  AUC {scores.auc:.3f}",
            )
            results.append(
                EpochResult(
                    epoch=epoch,
                    train_loss=round(train_loss, 5),
                    val_loss=round(scores.loss, 5),
                    val_accuracy=round(scores.accuracy, 4),
                    val_auc=round(scores.auc, 4),
                    train_rows=loss_rows,
                    rows_read=seen,
                    seconds=round(seconds, 3),
                )
            )
    assert scores is not None  # epochs >= 1
    return (
        model,
        results,
        {
            "parameters": sum(p.numel() for p in model.parameters()),
            "validation_rows": scores.rows,
            "validation_late_share": round(scores.late_share, 4),
            "majority_accuracy": round(max(scores.late_share, 1 - scores.late_share), 4),
        },
    )


def read_rate(endpoint: str, batch_size: int) -> tuple[int, float]:
    """Rows and seconds of one shuffled epoch read with no model (job ``throughput``).

    Args:
        endpoint: The feeder's Flight endpoint.
        batch_size: Rows per batch.

    Returns:
        (rows read, seconds).
    """
    from feeder.torch.dataset import FeederDataset

    dataset = FeederDataset(endpoint, batch_size=batch_size, job="throughput")
    started, rows = time.monotonic(), 0
    for batch in dataset:
        rows += int(batch["day"].numel())
    return rows, time.monotonic() - started
