"""PyTorch side: :class:`FeederDataset` (an ``IterableDataset`` of tensor dicts) and tensors."""

from feeder.torch.dataset import FeederDataset, Prefetcher, World, resolve_world
from feeder.torch.tensors import Batch, TensorOptions

__all__ = ["Batch", "FeederDataset", "Prefetcher", "TensorOptions", "World", "resolve_world"]
