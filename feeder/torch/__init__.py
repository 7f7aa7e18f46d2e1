"""PyTorch side: :class:`FeederDataset` (an ``IterableDataset`` of tensor dicts) and tensors."""

from feeder.torch.dataset import FeederDataset
from feeder.torch.prefetch import Prefetcher
from feeder.torch.tensors import Batch, TensorOptions
from feeder.torch.world import World, resolve_world

__all__ = ["Batch", "FeederDataset", "Prefetcher", "TensorOptions", "World", "resolve_world"]
