"""The demo's model side: features of a flight batch, the held-out split, AUC, the MLP.

Pure functions of tensors and arrays (no feeder, no Spark): ``encode`` turns one
``FeederDataset`` batch of the flights table into model inputs; ``is_holdout``
picks the validation days; ``roc_auc`` scores a ranking; ``build_model`` is the
MLP. Used by :mod:`examples.flights_demo.train`.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: Columns the model reads from the feeder (a projection: nothing else is sent).
FEATURE_COLUMNS = (
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "hour",
    "carrier",
    "origin",
    "dest",
    "distance",
    "is_late",
)
#: Hash buckets of the categorical columns (more than their distinct values in 2013).
BUCKETS = {"carrier": 32, "origin": 8, "dest": 256}
HOLDOUT_EVERY_DAYS = 7  # days 7, 14, 21, 28 of each month are the validation set
_DAYS_BEFORE_MONTH_2013 = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])
_WEEKDAY_OF_2013_01_01 = 1  # a Tuesday (Monday = 0)


@lru_cache(maxsize=4096)
def bucket(value: str, buckets: int) -> int:
    """A stable hash bucket of a category (crc32: the same in every process and run)."""
    return zlib.crc32(value.encode("utf-8")) % buckets


def is_holdout(day: torch.Tensor) -> torch.Tensor:
    """True for the validation days: every ``HOLDOUT_EVERY_DAYS``-th day of a month.

    Whole days are held out (not random rows): delays of one day are strongly
    correlated (weather, knock-on delays), so a random row split would leak.
    """
    return day % HOLDOUT_EVERY_DAYS == 0


def weekday_2013(month: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
    """Day of the week (Monday = 0) of a 2013 date."""
    import torch

    before = torch.as_tensor(_DAYS_BEFORE_MONTH_2013, dtype=torch.int64)
    day_of_year = before[month.long() - 1] + day.long() - 1
    return (day_of_year + _WEEKDAY_OF_2013_01_01) % 7


def _clock(hhmm: torch.Tensor) -> list[torch.Tensor]:
    import torch

    minutes = (hhmm // 100) * 60 + hhmm % 100
    angle = minutes.double() * (2 * math.pi / 1440)
    return [torch.sin(angle), torch.cos(angle)]


def encode(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Turn one feeder batch into model inputs: ``dense``, ``cats`` and the label ``y``."""
    import torch

    month_angle = (batch["month"].double() - 1) * (2 * math.pi / 12)
    weekday = weekday_2013(batch["month"], batch["day"])
    dense = torch.stack(
        [
            *_clock(batch["sched_dep_time"]),
            *_clock(batch["sched_arr_time"]),
            batch["hour"].double() / 23,
            torch.sin(month_angle),
            torch.cos(month_angle),
            torch.log(batch["distance"].double()) / math.log(5000),
        ],
        dim=1,
    ).float()
    cats = torch.stack(
        [
            torch.tensor([bucket(v, size) for v in batch[name]], dtype=torch.int64)
            for name, size in BUCKETS.items()
        ]
        + [weekday],
        dim=1,
    )
    return {"dense": dense, "cats": cats, "y": batch["is_late"].float()}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Returns NaN when only one class is present.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct score, then of each row.
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def build_model(seed: int) -> torch.nn.Module:
    """The MLP: an embedding per categorical column, concatenated with the dense features."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    sizes = [*BUCKETS.values(), 7]
    dims = [4, 2, 8, 3]

    class LateFlightMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(n, d) for n, d in zip(sizes, dims, strict=True)
            )
            self.mlp = nn.Sequential(
                nn.Linear(8 + sum(dims), 64),
                nn.ReLU(),
                nn.Linear(64, 32),
                nn.ReLU(),
                nn.Linear(32, 1),
            )

        def forward(self, dense: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
            embedded = [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.mlp(torch.cat([dense, *embedded], dim=1)).squeeze(1)

    return LateFlightMLP()
