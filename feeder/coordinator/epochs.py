"""What the coordinator remembers per job: its dynamic epochs' lease books, bounded.

Pure bookkeeping with an injectable clock (the caller holds the coordinator's
lock). Bounds (:class:`~feeder.coordinator.limits.CoordinatorLimits`): at most
``max_jobs`` live jobs, ``max_open_epochs`` unfinished and ``epochs_kept``
finished lease books per job, a book nobody called for ``idle_seconds`` dropped,
and ``consumers_kept`` consumer names per job. A dropped epoch is remembered as
such (up to a fixed number per job), so a late call about it gets a clear answer
instead of a fresh book that would deliver its rows again.

A following feeder binds every epoch of a job to one snapshot. A static consumer
(rank, DataLoader worker) reads the epoch it last asked a plan for; the coordinator
keeps each job's latest epoch per consumer, so a snapshot stays live while a rank
that lags behind the others may still read an epoch bound to it
(:meth:`EpochBooks.snapshots_in_use`).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feeder.coordinator.leases import LeaseBook
from feeder.coordinator.limits import RETIRED_EPOCHS_KEPT, CoordinatorLimits
from feeder.coordinator.mixplan import Groups
from feeder.protocol.messages import EpochParams, StaticRequest
from feeder.protocol.mix import MixParams
from feeder.protocol.shuffle import SliceRange
from jobs.errors import LimitError, SpecError

log = logging.getLogger(__name__)

RECENT_STATIC_EPOCHS = 8  # static epochs a job's status lists
EPOCH_SNAPSHOTS_KEPT = 16  # epochs per job whose snapshot is remembered


@dataclass
class EpochBook:
    """One job's dynamic epoch: its parameters, lease book and last use."""

    params: EpochParams
    book: LeaseBook
    last_used: float
    announced_end: bool = False
    #: MIX with locality: the host groups its windows were built over (fixed for the epoch)
    groups: Groups | None = None
    #: the registry placement its lease-by-host index was built at (-1: not built yet)
    homes_version: int = -1


@dataclass(frozen=True)
class Retired:
    """A dropped epoch: whether every row of it was delivered, and why it was dropped."""

    finished: bool
    why: str


@dataclass
class _JobState:
    last_seen: float
    epochs_started: int = 0
    static_epochs: OrderedDict[int, None] = field(default_factory=OrderedDict)
    consumers: OrderedDict[str, None] = field(default_factory=OrderedDict)
    consumers_seen: int = 0
    modes: set[str] = field(default_factory=set)
    retired: OrderedDict[int, Retired] = field(default_factory=OrderedDict)
    forgotten_below: int = 0  # epochs below it were dropped and are no longer remembered
    snapshots: OrderedDict[int, int] = field(default_factory=OrderedDict)  # epoch -> snapshot
    static_shape: tuple[int, int] | None = None  # (world_size, num_workers) of static_reads
    #: (rank, worker) -> the epoch that static consumer last asked a plan for
    static_reads: dict[tuple[int, int], int] = field(default_factory=dict)
    #: epochs below it may have had a binding that was forgotten, to these snapshots
    unbound_below: int = 0
    unbound_snapshots: set[int] = field(default_factory=set)

    _reads_text: str | None = field(default=None, repr=False)  # static_reads as JSON

    def reads_text(self) -> str:
        """``static_reads`` as JSON for the journal, kept until they change (a job of
        1,000 ranks would otherwise encode them again on every journal write)."""
        if self._reads_text is None:
            self._reads_text = _compact([[r, w, e] for (r, w), e in self.static_reads.items()])
        return self._reads_text

    def first_read_epoch(self) -> int | None:
        """The lowest epoch a consumer of the job may still read: its latest bound epoch,
        or an earlier one a static rank (or worker) last asked for (None: none bound)."""
        if not self.snapshots:
            return None
        return min([max(self.snapshots), *self.static_reads.values()])

    rows_leased: int = 0  # dynamic-mode rows leased (since this coordinator started)
    rows_local: int = 0  # of them, to a consumer on the host of the node it reads first


class EpochBooks:
    """The lease books and per-job state of one coordinator, within its limits.

    Args:
        limits: the bounds to keep.
        lease_seconds: lease time of every book.
        clock: monotonic clock (the coordinator's).
        session_id: the feeder session's id; every lease id starts with it and a dot.
    """

    def __init__(
        self,
        limits: CoordinatorLimits,
        *,
        lease_seconds: float,
        clock: Callable[[], float],
        session_id: str = "",
    ) -> None:
        self.limits = limits
        self.session_id = session_id
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._jobs: dict[str, _JobState] = {}
        self._books: dict[tuple[str, int], EpochBook] = {}

    def __len__(self) -> int:
        return len(self._books)

    # --- jobs ---------------------------------------------------------------------------

    def note_consumer(self, params: EpochParams, consumer: str, mode: str) -> int:
        """Record that ``consumer`` read ``params``' epoch; return the job's consumer count.

        Raises:
            LimitError: a new job while ``max_jobs`` jobs are live.
        """
        state = self._job(params.job)
        if mode == "static" and params.epoch not in state.static_epochs:
            state.epochs_started += 1
            state.static_epochs[params.epoch] = None
            while len(state.static_epochs) > RECENT_STATIC_EPOCHS:
                state.static_epochs.popitem(last=False)
            log.info("job %s started epoch %d (static mode)", params.job, params.epoch)
        if consumer in state.consumers:
            state.consumers.move_to_end(consumer)
        else:
            state.consumers_seen += 1
            state.consumers[consumer] = None
            while len(state.consumers) > self.limits.consumers_kept:
                state.consumers.popitem(last=False)
        state.modes.add(mode)
        return state.consumers_seen

    def touch(self, jobs: Sequence[str]) -> None:
        """Note that ``jobs`` read from a data node just now (known jobs only): a static
        epoch reads without calling the coordinator, and must not be forgotten (with
        the snapshot it reads) after ``idle_seconds`` while it does."""
        now = self._clock()
        for job in jobs:
            state = self._jobs.get(job)
            if state is not None:
                state.last_seen = max(state.last_seen, now)

    def _job(self, job: str) -> _JobState:
        now = self._clock()
        state = self._jobs.get(job)
        if state is None:
            self.sweep()
            if len(self._jobs) >= self.limits.max_jobs:
                raise LimitError(
                    f"job {job!r}: this feeder already serves {len(self._jobs)} live jobs "
                    f"(limit max_jobs={self.limits.max_jobs}); finish a job, wait "
                    f"{self.limits.idle_seconds:g} s for an idle one to be forgotten, or "
                    "start the feeder with a higher limit"
                )
            state = self._jobs[job] = _JobState(last_seen=now)
        state.last_seen = now
        return state

    def note_rows(self, job: str, rows: int, local: int) -> None:
        """Count ``rows`` leased to a consumer of ``job``, ``local`` of them on its host."""
        state = self._jobs.get(job)
        if state is not None:
            state.rows_leased += rows
            state.rows_local += local

    # --- snapshots (a following feeder, feeder.coordinator.snapshots) ------------------------

    def snapshot_of(self, job: str, epoch: int) -> int | None:
        """The snapshot ``job``'s ``epoch`` reads (None: not bound yet, or forgotten)."""
        state = self._jobs.get(job)
        return state.snapshots.get(epoch) if state is not None else None

    def bind(self, job: str, epoch: int, snapshot: int) -> None:
        """Record that ``job``'s ``epoch`` reads ``snapshot`` (every consumer of it will).

        The bindings of the job's last ``EPOCH_SNAPSHOTS_KEPT`` epochs are kept, and
        those of every epoch from the one its furthest-behind static consumer reads.

        Raises:
            LimitError: a new job while ``max_jobs`` jobs are live.
        """
        state = self._job(job)
        state.snapshots[epoch] = snapshot
        state.snapshots.move_to_end(epoch)
        self._forget_bindings(state)

    @staticmethod
    def _forget_bindings(state: _JobState) -> None:
        """Forget the oldest bindings beyond the last ``EPOCH_SNAPSHOTS_KEPT`` that no
        consumer may still read."""
        if len(state.snapshots) <= EPOCH_SNAPSHOTS_KEPT:
            return
        low = state.first_read_epoch()
        for epoch in sorted(state.snapshots):
            if len(state.snapshots) <= EPOCH_SNAPSHOTS_KEPT or low is None or epoch >= low:
                break
            state.unbound_snapshots.add(state.snapshots.pop(epoch))
            state.unbound_below = max(state.unbound_below, epoch + 1)

    def check_unbound(self, job: str, epoch: int, snapshot: int) -> None:
        """Refuse to bind ``job``'s ``epoch`` to ``snapshot`` when its binding was forgotten
        and may have been another snapshot (a consumer so far behind, and unknown, could
        get other rows than the epoch's other consumers got).

        Raises:
            SpecError: naming the snapshots the epoch may have read and what to do.
        """
        state = self._jobs.get(job)
        if state is None or epoch >= state.unbound_below:
            return
        others = sorted(state.unbound_snapshots - {snapshot})
        if others:
            raise SpecError(
                f"job {job!r} epoch {epoch}: which snapshot it reads is no longer known (this "
                f"feeder keeps the last {EPOCH_SNAPSHOTS_KEPT} epochs' and those a known rank "
                f"still reads); it may have read snapshot(s) {others}, not the current "
                f"snapshot {snapshot}, so this consumer could get other rows than the epoch's "
                f"others. Start epoch {state.unbound_below} or later, name the snapshot "
                "(snapshot_id=...), or use another job name for a new training run"
            )

    def note_static_read(self, request: StaticRequest) -> None:
        """Record that static consumer (rank, worker) of ``request`` reads its epoch now.

        A request of another world size or worker count (an elastic restart) starts
        the job's record afresh: the consumers of the old shape are gone.

        Raises:
            LimitError: a new job while ``max_jobs`` jobs are live.
        """
        state = self._job(request.job)
        shape = (request.world_size, request.num_workers)
        if state.static_shape != shape:
            state.static_shape, state.static_reads = shape, {}
        state.static_reads[(request.rank, request.worker)] = request.epoch
        state._reads_text = None
        self._forget_bindings(state)

    def snapshots_in_use(self) -> set[int]:
        """The snapshots a consumer may still read: those bound to any job's epochs from
        the lowest one a static consumer of it last asked for up to its latest, and
        those of unfinished lease books."""
        used: set[int] = set()
        for st in self._jobs.values():
            low = st.first_read_epoch()
            if low is not None:
                used.update(snap for epoch, snap in st.snapshots.items() if epoch >= low)
        for (job, epoch), entry in self._books.items():
            if not entry.book.finished:
                bound = self.snapshot_of(job, epoch)
                if bound is not None:
                    used.add(bound)
        return used

    # --- books -----------------------------------------------------------------------------

    def open(self, params: EpochParams, units: Callable[[], Iterable[SliceRange]]) -> EpochBook:
        """Return the book of ``params``' epoch, creating it from ``units()`` if new.

        Raises:
            SpecError: the epoch was dropped (finished or idle), or another
                consumer leased it with another seed, shuffle or columns.
            LimitError: the job has ``max_open_epochs`` unfinished epochs, or it
                is new and ``max_jobs`` jobs are live.
        """
        key = (params.job, params.epoch)
        entry = self._books.get(key)
        if entry is None:
            state = self._job(params.job)
            gone = self.retired(params.job, params.epoch)
            if gone is not None:
                raise SpecError(f"job {params.job!r} epoch {params.epoch} {gone.why}")
            self._make_room(params.job)
            book = self._new_book(units())
            entry = self._books[key] = EpochBook(params, book, last_used=self._clock())
            state.epochs_started += 1
            log.info("job %s started epoch %d (dynamic mode)", params.job, params.epoch)
        elif (entry.params.seed, entry.params.shuffle, entry.params.columns, entry.params.mix) != (
            params.seed,
            params.shuffle,
            params.columns,
            params.mix,
        ):
            raise SpecError(
                f"job {params.job!r} epoch {params.epoch} is leased with seed="
                f"{entry.params.seed}, shuffle={entry.params.shuffle.value}, columns="
                f"{entry.params.columns}; every consumer of a job must use the same"
            )
        entry.last_used = self._clock()
        return entry

    def _new_book(self, units: Iterable[SliceRange]) -> LeaseBook:
        return LeaseBook(
            units,
            lease_seconds=self.lease_seconds,
            stall_seconds=self.limits.stall_leases * self.lease_seconds,
            id_prefix=f"{self.session_id}." if self.session_id else "",
            clock=self._clock,
        )

    def get(self, job: str, epoch: int) -> EpochBook | None:
        """Return the book of a job's epoch (None: never leased).

        Raises:
            SpecError: the epoch was dropped (finished and evicted, or idle).
        """
        entry = self._books.get((job, epoch))
        if entry is None:
            gone = self.retired(job, epoch)
            if gone is not None:
                raise SpecError(f"job {job!r} epoch {epoch} {gone.why}")
            return None
        entry.last_used = self._clock()
        self._jobs[job].last_seen = entry.last_used
        return entry

    def retired(self, job: str, epoch: int) -> Retired | None:
        """Return how a job's epoch was dropped (None: it was not, or long ago)."""
        state = self._jobs.get(job)
        if state is None:
            return None
        gone = state.retired.get(epoch)
        if gone is None and epoch < state.forgotten_below and (job, epoch) not in self._books:
            return Retired(
                False,
                "is older than the epochs this feeder still remembers "
                f"(the last {RETIRED_EPOCHS_KEPT} dropped ones); start a later epoch",
            )
        return gone

    def _make_room(self, job: str) -> None:
        """Drop what the limits say before a new epoch of ``job`` opens."""
        self.sweep()
        mine = [e for (j, _), e in self._books.items() if j == job]
        open_epochs = [e for e in mine if not e.book.finished]
        if len(open_epochs) >= self.limits.max_open_epochs:
            raise LimitError(
                f"job {job!r} has {len(open_epochs)} unfinished epochs "
                f"(limit max_open_epochs={self.limits.max_open_epochs}): finish one, or let "
                f"it be dropped after {self.limits.idle_seconds:g} s without calls"
            )

    def sweep(self) -> None:
        """Drop idle books, finished books beyond ``epochs_kept`` per job, forgotten jobs."""
        now = self._clock()
        idle = self.limits.idle_seconds
        for key, entry in list(self._books.items()):
            if now - entry.last_used >= idle:
                what = "finished" if entry.book.finished else "unfinished"
                self._retire(
                    key, f"was dropped: {what} and without calls for {idle:g} s (idle_seconds)"
                )
        finished: dict[str, list[tuple[float, tuple[str, int]]]] = {}
        for key, entry in self._books.items():
            if entry.book.finished:
                finished.setdefault(key[0], []).append((entry.last_used, key))
        for keys in finished.values():
            keys.sort()
            for _, key in keys[: max(0, len(keys) - self.limits.epochs_kept)]:
                self._retire(key, "is finished (every row delivered)")
        live = {job for job, _ in self._books}
        for job, state in list(self._jobs.items()):
            if job not in live and now - state.last_seen >= idle:
                del self._jobs[job]

    def _retire(self, key: tuple[str, int], why: str) -> None:
        entry = self._books.pop(key)
        state = self._jobs.get(key[0])
        if state is None:
            return
        state.retired[key[1]] = Retired(entry.book.finished, why)
        state.last_seen = max(state.last_seen, self._clock())  # so a late caller hears why
        while len(state.retired) > RETIRED_EPOCHS_KEPT:
            epoch, _ = state.retired.popitem(last=False)
            state.forgotten_below = max(state.forgotten_below, epoch + 1)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the status document's ``jobs`` entry (bounded by the limits)."""
        out: dict[str, Any] = {}
        for job, state in self._jobs.items():
            dynamic = sorted(epoch for j, epoch in self._books if j == job)
            latest = max(state.snapshots) if state.snapshots else None
            out[job] = {
                "snapshot_id": state.snapshots[latest] if latest is not None else None,
                "epochs": sorted(set(dynamic) | set(state.static_epochs)),
                "epochs_started": state.epochs_started,
                "consumers": state.consumers_seen,
                "modes": sorted(state.modes),
                "locality": {
                    "rows_leased": state.rows_leased,
                    "rows_local": state.rows_local,
                    "local_share": (
                        round(state.rows_local / state.rows_leased, 4)
                        if state.rows_leased
                        else None
                    ),
                },
            }
        return out

    # --- journal (feeder.coordinator.journal) ------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return every job's state and lease book as a JSON-able document (no clock times)."""
        return dict(json.loads(self.state_text()))

    def state_text(self) -> str:
        """Return :meth:`state` as JSON text; the lease books' parts are joined from the
        texts they keep, so this is cheap enough to run under the coordinator's lock on
        every journal write."""
        jobs = []
        for job, st in self._jobs.items():
            fields = {
                "epochs_started": st.epochs_started,
                "static_epochs": list(st.static_epochs),
                "consumers_seen": st.consumers_seen,
                "modes": sorted(st.modes),
                "retired": [[e, r.finished, r.why] for e, r in st.retired.items()],
                "forgotten_below": st.forgotten_below,
                "snapshots": [[e, snap] for e, snap in st.snapshots.items()],
                "static_shape": list(st.static_shape) if st.static_shape is not None else None,
                "unbound_below": st.unbound_below,
                "unbound_snapshots": sorted(st.unbound_snapshots),
            }
            jobs.append(
                f'{_compact(job)}:{_compact(fields)[:-1]},"static_reads":{st.reads_text()}}}'
            )
        books = []
        for (job, epoch), e in self._books.items():
            head = {
                "job": job,
                "epoch": epoch,
                "seed": e.params.seed,
                "shuffle": e.params.shuffle.value,
                "columns": list(e.params.columns) if e.params.columns is not None else None,
                "block_rows": e.params.mix.block_rows,
                "window_rows": e.params.mix.window_rows,
                "announced_end": e.announced_end,
            }
            if e.groups is not None:
                head["groups"] = [[host, list(ids)] for host, ids in e.groups]
            books.append(f'{_compact(head)[:-1]},"book":{e.book.state_text()}}}')
        return f'{{"jobs":{{{",".join(jobs)}}},"books":[{",".join(books)}]}}'

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (a restarted coordinator); every book counts as just used.

        Raises:
            KeyError, TypeError, ValueError: ``state`` is not what :meth:`state` returns.
        """
        now = self._clock()
        for job, st in state["jobs"].items():
            self._jobs[job] = _JobState(
                last_seen=now,
                epochs_started=int(st["epochs_started"]),
                static_epochs=OrderedDict((int(e), None) for e in st["static_epochs"]),
                consumers_seen=int(st["consumers_seen"]),
                modes={str(m) for m in st["modes"]},
                retired=OrderedDict(
                    (int(e), Retired(bool(f), str(w))) for e, f, w in st["retired"]
                ),
                forgotten_below=int(st["forgotten_below"]),
                snapshots=OrderedDict((int(e), int(k)) for e, k in st.get("snapshots", [])),
                static_shape=_shape(st.get("static_shape")),
                static_reads={(int(r), int(w)): int(e) for r, w, e in st.get("static_reads", [])},
                unbound_below=int(st.get("unbound_below", 0)),
                unbound_snapshots={int(k) for k in st.get("unbound_snapshots", [])},
            )
        for entry in state["books"]:
            params = EpochParams(
                job=entry["job"],
                epoch=int(entry["epoch"]),
                seed=int(entry["seed"]),
                shuffle=entry["shuffle"],
                columns=tuple(entry["columns"]) if entry["columns"] is not None else None,
                mix=MixParams(block_rows=entry["block_rows"], window_rows=entry["window_rows"]),
            )
            book = self._new_book(())
            book.restore(entry["book"])
            self._jobs.setdefault(params.job, _JobState(last_seen=now))
            groups = entry.get("groups")
            self._books[(params.job, params.epoch)] = EpochBook(
                params,
                book,
                last_used=now,
                announced_end=bool(entry["announced_end"]),
                groups=(
                    tuple((str(h), tuple(int(s) for s in ids)) for h, ids in groups)
                    if groups is not None
                    else None
                ),
            )


def _shape(value: Any) -> tuple[int, int] | None:
    """A journalled ``static_shape``: None or [world_size, num_workers]."""
    if value is None:
        return None
    world_size, num_workers = value
    return int(world_size), int(num_workers)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
