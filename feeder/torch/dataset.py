"""``FeederDataset``: a torch ``IterableDataset`` of dict-of-tensor batches read from a feeder.

Use it with ``DataLoader(ds, batch_size=None, num_workers=k)``: the dataset makes
the batches itself (exactly ``batch_size`` rows; the last one may be short unless
``drop_last``). Never imports pyspark (import-linter contract); see ``docs/torch.md``.

Who reads what (static mode): the epoch's row stream is cut into ``world_size``
equal parts (PROTOCOL.md); a rank's DataLoader workers cut the rank's part again
into contiguous parts of whole batches (``feeder.protocol.shuffle.split_ranges`` with
``unit=batch_size``), so each rank yields ``floor(L / batch_size)`` batches
(``ceil`` without ``drop_last``) whatever its number of workers, the same on
every rank: DDP never waits on a missing last step.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from pydantic import SecretStr
from torch.utils.data import IterableDataset, get_worker_info

from feeder.client.client import FeederClient  # at import: not on the first batch's path
from feeder.protocol.config import TLSConfig
from feeder.protocol.modes import Mode
from feeder.protocol.shuffle_kind import Shuffle, parse_shuffle
from feeder.torch.batching import rebatch as rebatch  # re-exported: it lived here before
from feeder.torch.batching import tensor_batches
from feeder.torch.resume import ResumeState
from feeder.torch.tensors import Batch, TensorOptions
from jobs.errors import FeederError, SpecError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds an unused read-ahead of the next epoch waits before giving up.
READ_AHEAD_IDLE = 60.0


@dataclass(frozen=True)
class World:
    """Who this iterator is: rank of world_size, worker of num_workers."""

    rank: int
    world_size: int
    worker: int = 0
    num_workers: int = 1


def resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Return (rank, world_size): explicit values, else torch.distributed, else env, else 0/1.

    Raises SpecError unless ``0 <= rank < world_size``.
    """
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            auto_rank, auto_world = dist.get_rank(), dist.get_world_size()
        else:
            auto_rank = int(os.environ.get("RANK", "0"))
            auto_world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = auto_rank if rank is None else rank
        world_size = auto_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpecError(f"rank {rank} must be in [0, world_size={world_size})")
    return rank, world_size


class _End:
    pass


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Prefetcher(Generic[_T]):
    """Run ``source`` in a background thread, ``depth`` items ahead of the consumer.

    Exceptions raised by ``source`` are re-raised in the consumer; :meth:`close`
    (or leaving a ``with`` block) stops the thread and closes the source within
    ``join_timeout`` seconds. With ``max_idle``, a prefetcher whose queue stays full
    that long gives up by itself (:attr:`expired`): for speculative read-ahead.
    With ``weight``, ``depth`` bounds the summed weight of the queued items instead
    of their number (an item always enters an empty queue). ``on_end(self)`` runs in
    the thread when ``source`` is exhausted, before the consumer sees the end.
    """

    def __init__(
        self,
        source: Iterator[_T],
        depth: int,
        *,
        join_timeout: float = 10.0,
        max_idle: float | None = None,
        weight: Callable[[_T], int] | None = None,
        on_end: Callable[[Prefetcher[_T]], None] | None = None,
    ) -> None:
        if depth < 1:
            raise SpecError(f"prefetch depth {depth} must be >= 1")
        self._depth = depth
        self._max_idle = max_idle
        self._weight = weight
        self._on_end = on_end
        self.expired = False
        self._source = source
        self._items: deque[tuple[Any, int]] = deque()
        self._spent: deque[object] = deque()  # consumed items the thread frees (retire)
        self._queued = 0  # summed weight of self._items
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._done = False
        self._thread = threading.Thread(target=self._run, name="feeder-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object, weight: int = 1) -> bool:
        self._free_spent()
        with self._cond:
            full_since: float | None = None
            while self._queued >= self._depth and not self._stop.is_set():
                self._cond.wait(0.1)
                self._free_spent()
                if self._max_idle is None or self._queued < self._depth:
                    continue
                now = time.monotonic()
                full_since = now if full_since is None else full_since
                if now - full_since >= self._max_idle:
                    self.expired = True
                    self._stop.set()
            if self._stop.is_set():
                return False
            self._items.append((item, weight))
            self._queued += weight
            self._cond.notify_all()
            return True

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item, self._weight(item) if self._weight else 1):
                    return
            if self._on_end is not None and not self._stop.is_set():
                self._on_end(self)
            self._put(_End())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def retire(self, item: object) -> None:
        """Hand back an item the consumer is done with, so that this thread, not the
        consumer, frees it (dropping a group of tensors costs ~0.1 ms of the consumer's
        time between steps). The most recently retired item is kept until the next one
        arrives: the consumer may still hold its last batch."""
        self._spent.append(item)

    def _free_spent(self) -> None:
        while len(self._spent) > 1:
            self._spent.popleft()

    def claim(self) -> bool:
        """Keep this read-ahead for a consumer: it no longer gives up when idle.

        Returns False if it already gave up (:attr:`expired`).
        """
        with self._cond:
            if self.expired:
                return False
            self._max_idle = None
            return True

    def __iter__(self) -> Prefetcher[_T]:
        return self

    def __next__(self) -> _T:
        if self._done:
            raise StopIteration
        with self._cond:
            while not self._items:
                if not self._thread.is_alive() and not self._items:
                    self._done = True
                    raise FeederError("prefetch thread ended without a result")
                self._cond.wait(0.5)
            item, weight = self._items.popleft()
            self._queued -= weight
            self._cond.notify_all()
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the thread, drop prefetched items, close the source."""
        self._done = True
        with self._cond:
            self._stop.set()
            self._items.clear()
            self._spent.clear()
            self._queued = 0
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.warning("prefetch thread still running %.0fs after close", self._join_timeout)

    def __enter__(self) -> Prefetcher[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: What the producer hands over: the (rows, batch) pairs one incoming record batch completes.
_Group = list[tuple[int, Batch]]


class FeederDataset(IterableDataset[Batch]):
    """Batches of ``batch_size`` rows from a feeder, as ``dict[str, torch.Tensor]``.

    ``rank``/``world_size`` default to torch.distributed, else env ``RANK``/
    ``WORLD_SIZE``, else 0/1. Call :meth:`set_epoch` before each epoch (like
    ``DistributedSampler``). ``state_dict``/``load_state_dict`` resume mid-epoch
    (also through torchdata's ``StatefulDataLoader``, per worker). Tensor options
    (``nulls``, ``fill_value``, ``lists``, ``pad_value``, ``strings``,
    ``pin_memory``, ``device``) are those of :class:`feeder.torch.tensors.TensorOptions`;
    ``shuffle``: True (MIX: every batch represents the whole table), ``"slice"``
    (slices permuted, rows inside a slice: batches hold one slice's rows) or False;
    ``transform`` is applied to each converted batch in the prefetch thread.
    Raises SpecError for invalid arguments; iteration raises FeederError when the
    feeder cannot serve (a lost coordinator: within ``timeout`` seconds).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        batch_size: int,
        columns: Sequence[str] | None = None,
        job: str = "default",
        mode: Mode | str = Mode.STATIC,
        shuffle: bool | str | Shuffle = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = True,
        token: str | SecretStr | None = None,
        tls: TLSConfig | None = None,
        prefetch: int = 2,
        transform: Callable[[Batch], Batch] | None = None,
        timeout: float = 30.0,
        nulls: str = "error",
        fill_value: float = 0,
        lists: str = "pad",
        pad_value: float = 0,
        strings: str = "list",
        pin_memory: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: {batch_size!r} must be an integer >= 1")
        if prefetch < 0:
            raise SpecError(f"prefetch: {prefetch!r} must be >= 0 (0 = no background thread)")
        if not 0 <= seed < 2**64:
            raise SpecError(f"seed: {seed!r} must be in [0, 2**64)")
        if timeout <= 0:
            raise SpecError(f"timeout: {timeout!r} must be > 0 seconds")
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise SpecError(f"mode: {mode!r} is not one of 'static', 'dynamic'") from None
        if rank is not None or world_size is not None:
            resolve_world(rank if rank is not None else 0, world_size or 1)
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.job = job
        self.shuffle = shuffle
        self._shuffle = parse_shuffle(shuffle)  # SpecError now, not at the first batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.token = token
        self.tls = tls
        self.prefetch = prefetch
        self.transform = transform
        self.timeout = timeout
        self.tensor_options = TensorOptions(
            nulls=nulls,  # type: ignore[arg-type]  # validated by TensorOptions
            fill_value=fill_value,
            lists=lists,  # type: ignore[arg-type]
            pad_value=pad_value,
            strings=strings,  # type: ignore[arg-type]
            pin_memory=pin_memory,
            device=device,
        )
        self._epoch = 0
        self._pending: ResumeState | None = None
        # where the current iteration is: (world, epoch), rows yielded so far
        self._position: tuple[World, int] | None = None
        self._rows_consumed = 0
        self._client_cache: tuple[int, FeederClient] | None = None
        # static mode, no DataLoader worker: the next epoch's stream, opened ahead as soon
        # as the producer of the current iteration's stream (``_current``) is done
        self._ahead: tuple[tuple[World, int], Prefetcher[_Group]] | None = None
        self._current: Prefetcher[_Group] | None = None
        self._ahead_lock = threading.Lock()

    # --- epochs and resume -------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` on the next iteration (its order depends on seed and epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SpecError(f"epoch: {epoch!r} must be an integer >= 0")
        self._epoch = epoch

    @property
    def epoch(self) -> int:
        """The epoch the next iteration reads."""
        return self._epoch

    def _world(self) -> World:
        rank, world_size = resolve_world(self.rank, self.world_size)
        info = get_worker_info()
        if info is None:
            return World(rank, world_size)
        return World(rank, world_size, info.id, info.num_workers)

    def _state(self, world: World, *, epoch: int, rows_consumed: int) -> ResumeState:
        return ResumeState(
            job=self.job,
            epoch=epoch,
            rows_consumed=rows_consumed,
            seed=self.seed,
            shuffle=self._shuffle.value,
            world_size=world.world_size,
            rank=world.rank,
            num_workers=world.num_workers,
            worker=world.worker,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            mode=self.mode,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return this iterator's versioned resume state (see :mod:`feeder.torch.resume`).

        Counts rows of batches already *yielded*, not prefetched. Called in a
        DataLoader worker (as StatefulDataLoader does) it describes that worker.
        """
        if self._position is not None:
            world, epoch = self._position
            return self._state(world, epoch=epoch, rows_consumed=self._rows_consumed).to_dict()
        if self._pending is not None:
            return self._pending.to_dict()
        return self._state(self._world(), epoch=self._epoch, rows_consumed=0).to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state`` on the next iteration: its epoch, skipping consumed rows.

        Raises SpecError for a malformed or foreign state, and (at the next iteration,
        once the DataLoader worker is known) for a mid-epoch state of another shape.
        """
        resumed = ResumeState.from_dict(state)
        for name, now in (("job", self.job), ("mode", self.mode)):
            if getattr(resumed, name) != now:
                raise SpecError(
                    f"cannot resume: {name} was {getattr(resumed, name)!r} when the state was "
                    f"saved but is {now!r} for this dataset"
                )
        self._pending = resumed
        self._epoch = resumed.epoch
        self._position = None

    # --- iteration ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        world = self._world()
        epoch, skip = self._epoch, 0
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.check_compatible(self._state(world, epoch=pending.epoch, rows_consumed=0))
            epoch = pending.epoch
            skip = pending.rows_consumed if self.mode is Mode.STATIC else 0
        self._position = (world, epoch)
        self._rows_consumed = skip
        ahead = self._take_ahead((world, epoch) if skip == 0 else None)
        return self._iterate(world, epoch, skip, ahead)

    def _take_ahead(self, key: tuple[World, int] | None) -> Prefetcher[_Group] | None:
        """Return the read-ahead stream if it is for ``key`` (else close it)."""
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        ahead_key, prefetcher = ahead
        if ahead_key == key and prefetcher.claim():
            return prefetcher
        prefetcher.close()
        return None

    def _iterate(
        self,
        world: World,
        epoch: int,
        skip: int,
        ahead: Prefetcher[_Group] | None,
    ) -> Iterator[Batch]:
        source = None
        prefetcher = ahead
        if prefetcher is None and self.prefetch > 0:
            prefetcher = self._prefetcher(world, epoch, skip)
        if prefetcher is None:
            source = self._produce(world, epoch, skip)
            groups: Iterator[_Group] = source
        else:
            groups = prefetcher
        with self._ahead_lock:
            self._current = prefetcher
        completed = False
        try:
            for group in groups:
                for rows, batch in group:
                    self._rows_consumed += rows  # counted before the consumer sees the batch
                    yield batch
                if prefetcher is not None:
                    prefetcher.retire(group)  # freed by its thread, off the step path
            completed = True
        finally:
            with self._ahead_lock:
                if self._current is prefetcher:
                    self._current = None
            if prefetcher is not None:
                prefetcher.close()
            if source is not None:
                source.close()
        if completed:
            self._read_ahead(world, epoch + 1)  # unless the producer already did

    def _prefetcher(
        self, world: World, epoch: int, skip: int, *, max_idle: float | None = None
    ) -> Prefetcher[_Group]:
        """A prefetch thread for (world, epoch) from ``skip``; reads the next epoch ahead
        once its stream is exhausted, if it is still the one being iterated."""
        return Prefetcher(
            self._produce(world, epoch, skip),
            self.prefetch,
            max_idle=max_idle,
            weight=len,  # ``prefetch`` counts batches, the queue holds groups of them
            on_end=lambda done: self._read_ahead(world, epoch + 1, after=done),
        )

    def _read_ahead(
        self, world: World, epoch: int, *, after: Prefetcher[_Group] | None = None
    ) -> None:
        """Open epoch ``epoch``'s stream now, so the next epoch starts without a gap.

        Static mode in the main process only (its order is fixed in advance; a
        DataLoader worker's dataset copy ends with the epoch). Called by the prefetch
        thread ``after`` when its stream ends (only while ``after`` is the stream being
        iterated), and when an iteration completes; one read-ahead at a time. Unused
        read-ahead is closed by the next iteration, or gives up after READ_AHEAD_IDLE
        seconds.
        """
        if self.mode is not Mode.STATIC or self.prefetch == 0 or world.num_workers > 1:
            return
        if get_worker_info() is not None or epoch >= 2**32 - 1:
            return
        with self._ahead_lock:
            if self._ahead is not None or (after is not None and self._current is not after):
                return
            prefetcher = self._prefetcher(world, epoch, 0, max_idle=READ_AHEAD_IDLE)
            self._ahead = ((world, epoch), prefetcher)

    def close(self) -> None:
        """Stop any read-ahead of the next epoch (iterators clean up after themselves)."""
        self._take_ahead(None)

    def _produce(self, world: World, epoch: int, skip: int) -> Generator[_Group, None, None]:
        client = self._client()
        stream = client.stream(
            epoch,
            rank=world.rank,
            world_size=world.world_size,
            mode=self.mode,
            seed=self.seed,
            shuffle=self._shuffle,
            drop_last=self.drop_last,
            columns=self.columns,
            worker=world.worker,
            num_workers=world.num_workers,
            unit=self.batch_size,
            skip_rows=skip,
        )
        try:
            for group in tensor_batches(
                stream, self.batch_size, drop_last=self.drop_last, options=self.tensor_options
            ):
                if self.transform is not None:
                    group = [(rows, self.transform(batch)) for rows, batch in group]
                yield group
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _client(self) -> FeederClient:
        """This process's client (connections are reused across epochs, never pickled)."""
        pid = os.getpid()
        if self._client_cache is None or self._client_cache[0] != pid:
            client = FeederClient(
                self.endpoint, job=self.job, token=self.token, tls=self.tls, timeout=self.timeout
            )
            self._client_cache = (pid, client)
        return self._client_cache[1]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client_cache"] = None  # a DataLoader worker opens its own connections
        state["_ahead"] = state["_current"] = None
        del state["_ahead_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ahead_lock = threading.Lock()
