"""``FeederDataset``: a torch ``IterableDataset`` of dict-of-tensor batches read from a feeder.

Use it with ``DataLoader(ds, batch_size=None, num_workers=k)``: the dataset makes
the batches itself (exactly ``batch_size`` rows; the last one may be short unless
``drop_last``). Never imports pyspark (import-linter contract); see ``docs/torch.md``.

Who reads what (static mode): the epoch's row stream is cut into ``world_size``
equal parts (PROTOCOL.md); a rank's DataLoader workers cut the rank's part again
into contiguous parts of whole batches (``feeder.shuffle.split_ranges`` with
``unit=batch_size``), so each rank yields ``floor(L / batch_size)`` batches
(``ceil`` without ``drop_last``) whatever its number of workers, the same on
every rank: DDP never waits on a missing last step.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pyarrow as pa
import torch
from pydantic import SecretStr
from torch.utils.data import IterableDataset, get_worker_info

from feeder.config import TLSConfig
from feeder.resume import Mode, ResumeState
from feeder.tensors import Batch, TensorOptions, batch_to_tensors
from jobs.errors import FeederError, SpecError

if TYPE_CHECKING:
    from feeder.client import FeederClient

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


def rebatch(
    batches: Iterable[pa.RecordBatch], batch_size: int, *, drop_last: bool
) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of record batches into batches of exactly ``batch_size`` rows.

    The last batch may be shorter unless ``drop_last``. A batch that lies inside one
    incoming batch is a zero-copy slice; one that straddles incoming batches is
    concatenated (a copy).
    """
    if batch_size < 1:
        raise SpecError(f"batch_size {batch_size} must be >= 1")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for incoming in batches:
        offset = 0
        n = incoming.num_rows
        while offset < n:
            if pending_rows == 0 and n - offset >= batch_size:
                yield incoming.slice(offset, batch_size)
                offset += batch_size
                continue
            take = min(batch_size - pending_rows, n - offset)
            pending.append(incoming.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == batch_size:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending_rows and not drop_last:
        yield _concat(pending)


def _concat(parts: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


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
    """

    def __init__(
        self,
        source: Iterator[_T],
        depth: int,
        *,
        join_timeout: float = 10.0,
        max_idle: float | None = None,
    ) -> None:
        if depth < 1:
            raise SpecError(f"prefetch depth {depth} must be >= 1")
        self._max_idle = max_idle
        self.expired = False
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._done = False
        self._thread = threading.Thread(target=self._run, name="feeder-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        waited = 0.0
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                waited += 0.1
                if self._max_idle is not None and waited >= self._max_idle:
                    self.expired = True
                    self._stop.set()
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetcher[_T]:
        return self

    def __next__(self) -> _T:
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise FeederError("prefetch thread ended without a result") from None
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
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.warning("prefetch thread still running %.0fs after close", self._join_timeout)

    def __enter__(self) -> Prefetcher[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeederDataset(IterableDataset[Batch]):
    """Batches of ``batch_size`` rows from a feeder, as ``dict[str, torch.Tensor]``.

    ``rank``/``world_size`` default to torch.distributed, else env ``RANK``/
    ``WORLD_SIZE``, else 0/1. Call :meth:`set_epoch` before each epoch (like
    ``DistributedSampler``). ``state_dict``/``load_state_dict`` resume mid-epoch
    (also through torchdata's ``StatefulDataLoader``, per worker). Tensor options
    (``nulls``, ``fill_value``, ``lists``, ``pad_value``, ``strings``,
    ``pin_memory``, ``device``) are those of :class:`feeder.tensors.TensorOptions`;
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
        shuffle: bool = True,
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
        # static mode, no DataLoader worker: the next epoch's stream, opened ahead
        self._ahead: tuple[tuple[World, int], Prefetcher[tuple[int, Batch]]] | None = None

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
            shuffle=self.shuffle,
            world_size=world.world_size,
            rank=world.rank,
            num_workers=world.num_workers,
            worker=world.worker,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            mode=self.mode,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return this iterator's versioned resume state (see :mod:`feeder.resume`).

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

    def _take_ahead(self, key: tuple[World, int] | None) -> Prefetcher[tuple[int, Batch]] | None:
        """Return the read-ahead stream if it is for ``key`` (else close it)."""
        if self._ahead is None:
            return None
        (ahead_key, prefetcher), self._ahead = self._ahead, None
        if ahead_key == key and not prefetcher.expired:
            return prefetcher
        prefetcher.close()
        return None

    def _iterate(
        self,
        world: World,
        epoch: int,
        skip: int,
        ahead: Prefetcher[tuple[int, Batch]] | None,
    ) -> Iterator[Batch]:
        source = None
        if ahead is not None:
            batches: Iterator[tuple[int, Batch]] = ahead
            prefetcher: Prefetcher[tuple[int, Batch]] | None = ahead
        elif self.prefetch == 0:
            source = self._produce(world, epoch, skip)
            batches, prefetcher = source, None
        else:
            prefetcher = Prefetcher(self._produce(world, epoch, skip), self.prefetch)
            batches = prefetcher
        completed = False
        try:
            for rows, batch in batches:
                self._rows_consumed += rows  # counted before the consumer sees the batch
                yield batch
            completed = True
        finally:
            if prefetcher is not None:
                prefetcher.close()
            if source is not None:
                source.close()
        if completed:
            self._read_ahead(world, epoch + 1)

    def _read_ahead(self, world: World, epoch: int) -> None:
        """Open epoch ``epoch``'s stream now, so the next epoch starts without a gap.

        Static mode in the main process only (its order is fixed in advance; a
        DataLoader worker's dataset copy ends with the epoch). Unused read-ahead
        is closed by the next iteration, or gives up after READ_AHEAD_IDLE seconds.
        """
        if self.mode is not Mode.STATIC or self.prefetch == 0 or world.num_workers > 1:
            return
        if get_worker_info() is not None or epoch >= 2**32 - 1:
            return
        source = self._produce(world, epoch, 0)
        self._ahead = ((world, epoch), Prefetcher(source, self.prefetch, max_idle=READ_AHEAD_IDLE))

    def close(self) -> None:
        """Stop any read-ahead of the next epoch (iterators clean up after themselves)."""
        self._take_ahead(None)

    def _produce(
        self, world: World, epoch: int, skip: int
    ) -> Generator[tuple[int, Batch], None, None]:
        client = self._client()
        stream = client.stream(
            epoch,
            rank=world.rank,
            world_size=world.world_size,
            mode=self.mode,
            seed=self.seed,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            columns=self.columns,
            worker=world.worker,
            num_workers=world.num_workers,
            unit=self.batch_size,
            skip_rows=skip,
        )
        try:
            for record_batch in rebatch(stream, self.batch_size, drop_last=self.drop_last):
                batch = batch_to_tensors(record_batch, self.tensor_options)
                if self.transform is not None:
                    batch = self.transform(batch)
                yield record_batch.num_rows, batch
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _client(self) -> FeederClient:
        """This process's client (connections are reused across epochs, never pickled)."""
        from feeder.client import FeederClient

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
        state["_ahead"] = None
        return state
