"""``FeederDataset``: a torch ``IterableDataset`` of dict-of-tensor batches read from a feeder.

Use it with ``DataLoader(ds, batch_size=None, num_workers=k)``: the dataset makes
the batches itself (exactly ``batch_size`` rows; the last one may be short unless
``drop_last``), and ``len(ds)`` says how many (static mode). Never imports pyspark
(import-linter contract); see ``docs/torch.md``.

Who reads what (static mode): the epoch's row stream is cut into ``world_size``
equal parts (PROTOCOL.md); a rank's DataLoader workers cut the rank's part again
into contiguous parts of whole batches (``feeder.protocol.shuffle.split_ranges`` with
``unit=batch_size``), so each rank yields ``ceil(L / batch_size)`` batches
(``floor`` with ``drop_last``) whatever its number of workers, the same on
every rank: DDP never waits on a missing last step.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from pydantic import SecretStr
from torch.utils.data import IterableDataset, get_worker_info

# at import: not on the first batch's path
from feeder.client.client import FeederClient
from feeder.client.coordinator_calls import READY_TIMEOUT, RESTART_SECONDS
from feeder.client.request import ReadRequest
from feeder.protocol import fork_guard
from feeder.protocol.config import TLSConfig
from feeder.protocol.elastic import Progress
from feeder.protocol.forked_call import call_forked, can_fork_clean
from feeder.protocol.hosts import check_host
from feeder.protocol.mix import MixParams
from feeder.protocol.modes import Mode
from feeder.protocol.shuffle_kind import Shuffle, parse_shuffle
from feeder.torch.batching import rebatch as rebatch  # re-exported: it lived here before
from feeder.torch.batching import tensor_batches
from feeder.torch.handover import grouped, to_shared
from feeder.torch.prefetch import Prefetcher
from feeder.torch.resume import ResumeState, merge_worker_states
from feeder.torch.tensors import Batch, TensorOptions
from feeder.torch.world import World, resolve_world
from jobs.errors import FeederError, SpecError

__all__ = ["FeederDataset", "Prefetcher", "World", "rebatch", "resolve_world"]

log = logging.getLogger(__name__)

#: Seconds an unused read-ahead of the next epoch waits before giving up.
READ_AHEAD_IDLE = 60.0

#: The tensor keywords FeederDataset took before ``tensors=TensorOptions(...)``.
_TENSOR_FIELDS = ("nulls", "fill_value", "lists", "pad_value", "strings", "pin_memory", "device")

#: What the producer hands over: the (rows, batch) pairs one incoming record batch completes.
_Group = list[tuple[int, Batch]]


class FeederDataset(IterableDataset[Batch]):
    """Batches of ``batch_size`` rows from a feeder, as ``dict[str, torch.Tensor]``.

    Call :meth:`set_epoch` before each epoch (like ``DistributedSampler``).
    ``state_dict``/``load_state_dict`` resume mid-epoch (also through torchdata's
    ``StatefulDataLoader``, per worker). Iteration raises FeederError when the feeder
    cannot serve (a lost coordinator: within ``timeout`` seconds). See ``docs/torch.md``.

    Args:
        endpoint: the coordinator, ``grpc://host:port`` or ``grpc+tls://...``.
        batch_size: rows per batch.
        columns: the projection; None for every served column.
        job: this training job's name (its own epoch state on the feeder).
        mode: ``"static"`` (DDP: fixed equal shares) or ``"dynamic"`` (leases).
        shuffle: True (MIX, the default: every batch represents the whole table),
            ``"slice"`` (slices permuted, then rows inside a slice: a batch holds one
            slice's rows) or False (table order); deterministic from ``seed`` and the epoch.
        mix: MIX's knobs (block and window rows); None for the defaults. Every consumer
            of a job must use the same. Smaller windows mix less (docs/torch.md, *Shuffle*).
        seed: the shuffle seed, in ``[0, 2**64)``.
        rank: this process's rank; None: torch.distributed, else env ``RANK``, else 0.
        world_size: the number of ranks; None: as ``rank`` (env ``WORLD_SIZE``, else 1).
        drop_last: False (the default, as torch's ``DistributedSampler``): ranks get
            equal rows by repeating the epoch's first rows, and a consumer's short last
            batch is kept; True: the last ``N % world_size`` rows and short last
            batches are dropped. Either way every rank yields the same number of
            batches (:meth:`__len__`).
        token: the bearer token; None reads ``ICEFEED_TOKEN`` / ``ICEFEED_TOKEN_FILE``.
        tls: TLS settings for ``grpc+tls://``.
        prefetch: batches read and converted ahead in a background thread (0: none).
        transform: applied to each converted batch, in the prefetch thread.
        timeout: seconds; bounds every coordinator call.
        restart_seconds: how long a coordinator that answered before is retried while
            unreachable (a driver restart; a feeder with a journal continues the epoch).
        tensors: how columns become tensors (nulls, lists, strings, pinning,
            device); None for the :class:`~feeder.torch.tensors.TensorOptions` defaults.
        snapshot_id: read this table snapshot in every epoch (a feeder that follows its
            table keeps it while the job reads it); None: each epoch reads the snapshot
            the feeder serves new epochs. The resume state names the snapshot of its epoch.
        local_reads: read the slices of data nodes on this host from their cache files
            where they offer it (docs/feeder.md, *Local reads*); False: always Flight.
        host: the host this consumer runs on, for locality (dynamic mode leases this
            host's work first; docs/feeder.md, *Locality*); None: ``$ICEFEED_HOST``,
            else the hostname.
        locality: static mode, MIX: build the epoch order per data node's slices, so a
            rank's part comes from one node where the shape allows (every rank must
            agree; docs/feeder.md, *Locality*).

    Raises:
        SpecError: an argument is invalid.
        TypeError: a keyword is unknown, or is one of the tensor options that
            ``tensors=TensorOptions(...)`` now takes.
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
        drop_last: bool = False,
        token: str | SecretStr | None = None,
        tls: TLSConfig | None = None,
        prefetch: int = 2,
        transform: Callable[[Batch], Batch] | None = None,
        timeout: float = 30.0,
        restart_seconds: float = RESTART_SECONDS,
        tensors: TensorOptions | None = None,
        mix: MixParams | None = None,
        snapshot_id: int | None = None,
        local_reads: bool = True,
        host: str | None = None,
        locality: bool = False,
        **removed: Any,
    ) -> None:
        super().__init__()
        _refuse_removed(removed)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: {batch_size!r} must be an integer >= 1")
        if prefetch < 0:
            raise SpecError(f"prefetch: {prefetch!r} must be >= 0 (0 = no background thread)")
        if not 0 <= seed < 2**64:
            raise SpecError(f"seed: {seed!r} must be in [0, 2**64)")
        if timeout <= 0 or restart_seconds <= 0:
            raise SpecError(
                f"timeout, restart_seconds: {timeout!r}, {restart_seconds!r} must be > 0"
            )
        if not isinstance(local_reads, bool):
            raise SpecError(f"local_reads: {local_reads!r} must be true or false")
        if tensors is not None and not isinstance(tensors, TensorOptions):
            raise SpecError(f"tensors: {tensors!r} must be a TensorOptions or None")
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
        if mix is not None and not isinstance(mix, MixParams):
            raise SpecError(f"mix: {mix!r} must be a MixParams (or None for the defaults)")
        self.mix = mix if mix is not None else MixParams()
        if snapshot_id is not None and (
            isinstance(snapshot_id, bool) or not isinstance(snapshot_id, int)
        ):
            raise SpecError(f"snapshot_id: {snapshot_id!r} must be a snapshot id or None")
        self.snapshot_id = snapshot_id
        self._snapshots: dict[int, int] = {}  # epoch -> the snapshot the feeder said it reads
        self._resume_snapshot: int | None = None  # the snapshot a mid-epoch resume asks for
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.token = token
        self.tls = tls
        self.prefetch = prefetch
        self.transform = transform
        self.timeout = timeout
        self.restart_seconds = restart_seconds
        self.local_reads = local_reads
        self.host = None if host is None else check_host(host)
        self.locality = locality
        self.tensor_options = tensors if tensors is not None else TensorOptions()
        self._epoch = 0
        self._pending: ResumeState | None = None
        # where the current iteration is: (world, epoch), rows yielded so far
        self._position: tuple[World, int] | None = None
        self._rows_consumed = 0
        self._resume_from: Progress | None = None  # the elastic origin of this iteration
        self._client_cache: tuple[int, FeederClient] | None = None
        # (read, batches)
        self._len_cache: tuple[tuple[World, int, int, Progress | None], int] | None = None
        # static mode, no DataLoader worker: the next epoch's stream, opened ahead as soon
        # as the producer of the current iteration's stream (``_current``) is done
        self._ahead: tuple[tuple[World, int], Prefetcher[_Group]] | None = None
        self._current: Prefetcher[_Group] | None = None
        self._ahead_lock = threading.Lock()
        # batches a DataLoader worker packs into one hand-over (set by FeederDataLoader)
        self.handover_batches = 1

    # --- epochs and resume -------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` on the next iteration (its order depends on seed and epoch).

        Args:
            epoch: the epoch, an integer >= 0.

        Raises:
            SpecError: ``epoch`` is not an integer >= 0.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SpecError(f"epoch: {epoch!r} must be an integer >= 0")
        if epoch != self._epoch:
            self._resume_snapshot = None  # a resume state's snapshot is its epoch's only
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

    def _state(
        self,
        world: World,
        *,
        epoch: int,
        rows_consumed: int,
        resume_from: Progress | None = None,
    ) -> ResumeState:
        snapshot = self._snapshots.get(epoch)
        return ResumeState(
            snapshot_id=snapshot if snapshot is not None else self.snapshot_id,
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
            resume_from=resume_from,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return this iterator's versioned resume state (see :mod:`feeder.torch.resume`).

        Counts rows of batches already *yielded*, not prefetched. Called in a
        DataLoader worker (as StatefulDataLoader does) it describes that worker.

        Returns:
            A small JSON-able dict (``version``, ``epoch``, ``rows_consumed``, the shape).
        """
        if self._position is not None:
            world, epoch = self._position
            return self._state(
                world, epoch=epoch, rows_consumed=self._rows_consumed, resume_from=self._resume_from
            ).to_dict()
        if self._pending is not None:
            return self._pending.to_dict()
        return self._state(self._world(), epoch=self._epoch, rows_consumed=0).to_dict()

    def load_state_dict(self, state: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Resume from ``state`` on the next iteration: its epoch, skipping consumed rows.

        The same shape skips what was consumed. Another world size or worker count
        resumes elastically (static mode): the rest of the epoch is cut for the new
        shape, every row once (:mod:`feeder.torch.resume`); that needs a rank state:
        one taken without DataLoader workers, or the states of all of one rank's
        workers (pass them as a list, or merged by ``merge_worker_states``).

        Args:
            state: what :meth:`state_dict` returned, or a list of the states of all
                DataLoader workers of one rank.

        Raises:
            SpecError: a malformed or foreign state (another job or mode), and (at the
                next iteration, once the DataLoader worker is known) a mid-epoch state
                that cannot resume in this shape.
        """
        if not isinstance(state, Mapping) and isinstance(state, Sequence):
            state = merge_worker_states(state)
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
        mid_epoch = resumed.rows_consumed > 0 or any(resumed.delivered or ())
        self._resume_snapshot = resumed.snapshot_id if mid_epoch else None

    # --- iteration ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        """Return an iterator over this rank's (or DataLoader worker's) batches of the epoch.

        Returns:
            An iterator of ``dict[str, torch.Tensor]`` batches (lists for string columns).

        Raises:
            SpecError: a pending resume state does not fit this rank's shape.
            FeederError: this process (a DataLoader worker) was forked from a process
                that runs a Flight server or holds an open Flight client: gRPC would
                hang here.
        """
        _refuse_unsafe_fork()
        try:
            world, epoch, skip, origin = self._next_read()
        finally:
            self._pending = None  # a resume state is used (or refused) once
        self._position = (world, epoch)
        self._rows_consumed = skip
        self._resume_from = origin
        fresh = skip == 0 and origin is None
        ahead = self._take_ahead((world, epoch) if fresh else None)
        batches = self._iterate(world, epoch, skip, ahead, origin)
        if self._grouped():
            return grouped(batches, self.handover_batches)  # type: ignore[return-value]
        return batches

    def _grouped(self) -> bool:
        """True in a DataLoader worker that hands batches over in groups."""
        return self.handover_batches > 1 and get_worker_info() is not None

    def _next_read(self) -> tuple[World, int, int, Progress | None]:
        """Return (world, epoch, rows to skip, elastic origin) of the next iteration here.

        Raises SpecError if a pending resume state does not fit this world's shape.
        """
        world = self._world()
        pending = self._pending
        if pending is None:
            return world, self._epoch, 0, None
        skip, origin = pending.resume_plan(self._state(world, epoch=pending.epoch, rows_consumed=0))
        if self.mode is not Mode.STATIC:
            return world, pending.epoch, 0, None
        return world, pending.epoch, skip, origin

    def __len__(self) -> int:
        """Return how many batches the next iteration yields in this process (static mode).

        In the main process that is this rank's count for the epoch (whatever the
        number of DataLoader workers: their pieces are whole batches); in a DataLoader
        worker, that worker's count; after :meth:`load_state_dict`, what is left of the
        epoch. Equal on every rank. Asks the coordinator for the plan (once per epoch
        and shape), from a forked child while this process has never run gRPC, so a
        DataLoader may still fork its workers afterwards.

        Returns:
            ``ceil(rows / batch_size)`` of this consumer's rows (``floor`` with
            ``drop_last``).

        Raises:
            TypeError: in dynamic mode, where consumers lease units as they go and a
                rank's count is known only at the end of the epoch (``len()`` of an
                unsized iterable is a TypeError, as in torch).
            SpecError: a pending resume state does not fit this rank's shape.
            FeederError: the coordinator could not be reached within ``timeout``, or
                this process was forked from one with live gRPC users (see ``__iter__``).
        """
        if self.mode is not Mode.STATIC:
            raise TypeError(
                "len() of a FeederDataset in dynamic mode is unknown: consumers lease units "
                "as they go, so how many batches a rank yields is known only at the end of "
                "the epoch; use mode='static' for a fixed count"
            )
        _refuse_unsafe_fork()
        world, epoch, skip, origin = self._next_read()
        key = (world, epoch, skip, origin)
        if self._len_cache is None or self._len_cache[0] != key:
            rows = self._planned_rows(self._request(world, epoch, skip, origin))
            batches = rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)
            self._len_cache = (key, batches)
        return self._len_cache[1]

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
        origin: Progress | None = None,
    ) -> Iterator[Batch]:
        source = None
        prefetcher = ahead
        if prefetcher is None and self.prefetch > 0:
            prefetcher = self._prefetcher(world, epoch, skip, origin=origin)
        if prefetcher is None:
            source = self._produce(world, epoch, skip, origin)
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
        self,
        world: World,
        epoch: int,
        skip: int,
        *,
        max_idle: float | None = None,
        origin: Progress | None = None,
    ) -> Prefetcher[_Group]:
        """A prefetch thread for (world, epoch) from ``skip``; reads the next epoch ahead
        once its stream is exhausted, if it is still the one being iterated."""
        return Prefetcher(
            self._produce(world, epoch, skip, origin),
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
        """Stop any read-ahead of the next epoch and close this process's connections.

        Iterators clean up after themselves; the next iteration connects again. Call
        it before a DataLoader forks workers from a process that iterated the dataset.
        """
        self._take_ahead(None)
        cached, self._client_cache = self._client_cache, None
        if cached is not None and cached[0] == os.getpid():
            cached[1].close()

    def _produce(
        self, world: World, epoch: int, skip: int, origin: Progress | None = None
    ) -> Generator[_Group, None, None]:
        client = self._client()

        def note(snapshot: int) -> None:
            self._snapshots[epoch] = snapshot
            for old in [e for e in self._snapshots if e < epoch - 2]:
                self._snapshots.pop(old, None)

        request = self._request(world, epoch, skip, origin)
        stream = client.stream(request=request, on_snapshot=note)
        # in a DataLoader worker, batches are built in shared memory: the hand-over to
        # the main process then passes one handle per batch instead of copying
        # (feeder.torch.handover); the main process keeps its zero-copy views
        in_worker = get_worker_info() is not None and not self._grouped()
        try:
            for group in tensor_batches(
                stream, self.batch_size, drop_last=self.drop_last, options=self.tensor_options
            ):
                if self.transform is not None:
                    group = [(rows, self.transform(batch)) for rows, batch in group]
                if in_worker:
                    group = [(rows, to_shared(batch)) for rows, batch in group]
                yield group
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _request(
        self, world: World, epoch: int, skip: int, origin: Progress | None = None
    ) -> ReadRequest:
        return ReadRequest(
            epoch=epoch,
            mode=self.mode,
            seed=self.seed,
            shuffle=self._shuffle,
            mix=self.mix,
            columns=tuple(self.columns) if self.columns is not None else None,
            rank=world.rank,
            world_size=world.world_size,
            drop_last=self.drop_last,
            worker=world.worker,
            num_workers=world.num_workers,
            unit=self.batch_size,
            skip_rows=skip,
            resume_from=origin,
            snapshot_id=self._snapshot_for(epoch),
            locality=self.locality and self.mode is Mode.STATIC,
        )

    def _snapshot_for(self, epoch: int) -> int | None:
        """The snapshot to ask for: the pinned one, else a mid-epoch resume state's."""
        if self.snapshot_id is not None:
            return self.snapshot_id
        pending = self._resume_snapshot
        return pending if pending is not None and epoch == self._epoch else None

    def _planned_rows(self, request: ReadRequest) -> int:
        """This consumer's rows for ``request``, asked without making this process unsafe to fork.

        In a process that has never run gRPC (a training script's main process, whose
        DataLoader forks its workers next) the call runs in a forked child.
        """

        def ask() -> int:
            with self._new_client() as client:
                return int(client.plan(request=request).total_records)

        if get_worker_info() is not None or not can_fork_clean():
            return ask()
        deadline = self.timeout + READY_TIMEOUT + 30.0
        return call_forked(ask, deadline=deadline, what=f"len() of the feeder at {self.endpoint}")

    def _new_client(self) -> FeederClient:
        return FeederClient(
            self.endpoint,
            job=self.job,
            token=self.token,
            tls=self.tls,
            timeout=self.timeout,
            restart_seconds=self.restart_seconds,
            local_reads=self.local_reads,
            host=self.host,
        )

    def _client(self) -> FeederClient:
        """This process's client (connections are reused across epochs, never pickled)."""
        pid = os.getpid()
        if self._client_cache is None or self._client_cache[0] != pid:
            self._client_cache = (pid, self._new_client())
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


def _refuse_unsafe_fork() -> None:
    """Raise FeederError in a process forked from one with live gRPC users (it would hang)."""
    parent = fork_guard.inherited()
    if not parent:
        return
    info = get_worker_info()
    who = "this process" if info is None else f"DataLoader worker {info.id}"
    raise FeederError(
        f"{who} was forked from a process that runs gRPC ({'; '.join(parent)}); gRPC is not "
        "fork-safe and the feeder's connections would hang here. Pass "
        'multiprocessing_context="forkserver" (or "spawn") to the DataLoader, or close '
        "those before the workers start (FeederDataset.close(), FeederClient.close(), "
        "stop the feeder)"
    )


def _refuse_removed(removed: Mapping[str, Any]) -> None:
    """Raise TypeError for keywords FeederDataset does not take, naming any replacement."""
    if not removed:
        return
    moved = [name for name in removed if name in _TENSOR_FIELDS]
    if moved:
        given = ", ".join(f"{name}={removed[name]!r}" for name in moved)
        raise TypeError(
            f"FeederDataset no longer takes {', '.join(moved)}: pass "
            f"tensors=TensorOptions({given}) (from feeder.torch import TensorOptions)"
        )
    raise TypeError(f"FeederDataset got unexpected keyword argument(s) {sorted(removed)}")
