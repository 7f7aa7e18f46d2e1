"""PyTorch side: :class:`FeederDataset` (an ``IterableDataset`` of tensor dicts) and tensors."""

from feeder.torch.data_wait import DataWait, WaitSummary
from feeder.torch.dataset import FeederDataset
from feeder.torch.loader import FeederDataLoader
from feeder.torch.prefetch import Prefetcher
from feeder.torch.tensors import Batch, TensorOptions
from feeder.torch.world import World, resolve_world

__all__ = [
    "Batch",
    "DataWait",
    "FeederDataLoader",
    "FeederDataset",
    "Prefetcher",
    "TensorOptions",
    "WaitSummary",
    "World",
    "resolve_world",
]
