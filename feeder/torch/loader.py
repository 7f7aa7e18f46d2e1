"""FeederDataLoader: a DataLoader over a FeederDataset whose workers hand batches over in
groups.

torch's DataLoader sends every item a worker yields to the main process on its own;
each hand-over costs the main process about a millisecond or two whatever the
item's size, so a DataLoader whose workers yield one batch at a time tops out at a
few hundred batches a second. FeederDataLoader's workers pack ``handover_batches``
consecutive batches into one shared-memory segment (:mod:`feeder.torch.handover`)
and the main process hands them out one by one, as views. Everything else is the
DataLoader's: ``pin_memory``, ``prefetch_factor`` (counted in groups),
``persistent_workers``, ``timeout``, ``worker_init_fn``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from feeder.torch import shm_ring
from feeder.torch.dataset import FeederDataset
from feeder.torch.handover import BatchGroup, SharedGroup
from feeder.torch.tensors import Batch
from jobs.errors import SpecError

#: batches per hand-over by default (32 batches of 16 Ki rows of 24 bytes: ~12 MiB)
DEFAULT_HANDOVER_BATCHES = 32
#: the start method for workers unless told otherwise: a process that ever ran gRPC
#: (a feeder, a FeederClient, a FeederDataset's len()) must not fork them
DEFAULT_CONTEXT = "forkserver"


class FeederDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``DataLoader(dataset, batch_size=None, ...)`` whose workers hand batches over in
    groups of ``handover_batches``; it yields the dataset's batches, one at a time.

    Args:
        dataset: the FeederDataset; its workers' copies pack batches (it gets
            ``handover_batches``: use it with one FeederDataLoader at a time).
        num_workers: DataLoader worker processes (0: read in this process).
        handover_batches: batches per hand-over from a worker (1: torch's own, one by one).
        multiprocessing_context: the workers' start method; ``"forkserver"`` by default
            (forked workers would hang on gRPC, and FeederDataset refuses them).
        **kwargs: any other DataLoader keyword (``pin_memory``, ``prefetch_factor``,
            ``persistent_workers``, ``timeout``, ``worker_init_fn``, ...).

    Raises:
        SpecError: ``dataset`` is not a FeederDataset, ``handover_batches`` is not a
            positive integer, or a keyword that batches or samples is passed (the
            dataset already yields batches, and shards itself).
    """

    def __init__(
        self,
        dataset: FeederDataset,
        *,
        num_workers: int = 0,
        handover_batches: int = DEFAULT_HANDOVER_BATCHES,
        multiprocessing_context: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(dataset, FeederDataset):
            raise SpecError(
                f"FeederDataLoader reads a FeederDataset, not {type(dataset).__name__}; "
                "use torch's DataLoader for other datasets"
            )
        if isinstance(handover_batches, bool) or not isinstance(handover_batches, int):
            raise SpecError(f"handover_batches: {handover_batches!r} must be an integer >= 1")
        if handover_batches < 1:
            raise SpecError(f"handover_batches: {handover_batches!r} must be an integer >= 1")
        refused = sorted(
            {"batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn", "drop_last"}
            & set(kwargs)
        )
        if refused:
            raise SpecError(
                f"FeederDataLoader does not take {', '.join(refused)}: FeederDataset already "
                "yields batches (batch_size, drop_last, shuffle are FeederDataset's own "
                "arguments) and shards itself across ranks and workers"
            )
        # the dataset itself (not a copy): set_epoch on it must reach the workers
        dataset.handover_batches = handover_batches if num_workers > 0 else 1
        if num_workers > 0 and multiprocessing_context is None:
            multiprocessing_context = DEFAULT_CONTEXT
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            multiprocessing_context=multiprocessing_context,
            **kwargs,
        )
        self.handover_batches = handover_batches

    @property
    def feeder_dataset(self) -> FeederDataset:
        """The dataset this loader reads (call ``set_epoch`` on it, or on the loader)."""
        dataset = self.dataset
        assert isinstance(dataset, FeederDataset)
        return dataset

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` next (:meth:`FeederDataset.set_epoch` of the loader's copy)."""
        self.feeder_dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        try:
            for item in super().__iter__():
                if isinstance(item, SharedGroup):
                    item = item.attach()
                if isinstance(item, BatchGroup):
                    yield from item.batches()
                else:
                    yield item
        finally:
            shm_ring.forget_gone()  # mappings of workers that ended with this iteration
