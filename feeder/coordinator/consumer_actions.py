"""The coordinator's consumer side: static plans, dynamic-mode leases and failover resume.

Static mode: ``get_flight_info`` answers a consumer's share of an epoch as one
signed ticket per slice range, every live node as a location. Dynamic mode:
``lease`` / ``heartbeat`` / ``done`` over one :class:`~feeder.coordinator.leases.LeaseBook`
per job and epoch. Failover: ``resume`` re-signs the rest of a ticket after a
broken stream with the current live locations. Every handler raises SpecError
(bad request) or a Flight error; the coordinator's guard turns them into Flight
errors and keeps serving. Wire forms: PROTOCOL.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow.flight as flight

from feeder.coordinator import locality, mixplan
from feeder.coordinator.epochs import EpochBook, EpochBooks
from feeder.coordinator.journal import Journal
from feeder.coordinator.journal_commit import GroupCommit
from feeder.coordinator.limits import CoordinatorLimits
from feeder.coordinator.metrics import FeederMetrics
from feeder.coordinator.registry import NodeRegistry
from feeder.coordinator.served import ServedSnapshot
from feeder.coordinator.snapshots import LiveSnapshots
from feeder.protocol.auth import caller_job
from feeder.protocol.messages import (
    EpochParams,
    LeaseRequest,
    StaticRequest,
    field_int,
    field_job,
    field_name,
    parse_json,
)
from feeder.protocol.mix import WindowRead
from feeder.protocol.shuffle import (
    SliceRange,
    epoch_stream,
    position_ranges,
    rank_ranges,
    skip_rows,
    split_ranges,
)
from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import TicketClaims, TicketSigner, check_session
from jobs.errors import FeederError, SpecError

log = logging.getLogger(__name__)

Handler = Callable[[flight.ServerCallContext, bytes], dict[str, Any]]


class ConsumerActions:
    """The consumer handlers of one coordinator session; they share the coordinator's lock.

    With a ``journal``, every change of the epoch state is saved before the answer
    goes out, and ``restored`` (the journal's last state) is continued. With
    ``locality``, a MIX epoch's windows are built per host group of slices, so a
    consumer can lease its own host's windows first (slice-range units are leased by
    host either way; docs/feeder.md, *Locality*).

    Raises:
        FeederError: ``restored`` is not a valid epoch state.
    """

    def __init__(
        self,
        served: ServedSnapshot,
        *,
        snapshots: LiveSnapshots,
        signer: TicketSigner,
        registry: NodeRegistry,
        lock: threading.Condition,
        lease_seconds: float,
        metrics: FeederMetrics | None,
        clock: Callable[[], float],
        limits: CoordinatorLimits | None = None,
        journal: Journal | None = None,
        restored: dict[str, Any] | None = None,
        locality: bool = False,
    ) -> None:
        self.served = served
        self.locality = locality
        self.snapshots = snapshots
        #: called (under the lock) after an epoch is bound to a snapshot: retires unused ones
        self.on_bound: Callable[[], None] | None = None
        #: whether every live node serves a snapshot (a refresh reaches them by heartbeat)
        self.nodes_serve: Callable[[int], bool] = lambda snapshot: True
        self.journal = journal
        self.signer = signer
        self.registry = registry
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self._lock = lock
        self._clock = clock
        self.books = EpochBooks(
            limits or CoordinatorLimits(),
            lease_seconds=lease_seconds,
            clock=clock,
            session_id=signer.session_id,
        )
        # a journal write per change, shared by the calls that arrive together; an
        # answer leaves once the journal holds what it reports (journal_commit)
        self._commit = (
            GroupCommit(
                lambda state: journal.save(state[1], snapshots=state[0]),
                lambda: (snapshots.state_text(), self.books.state_text()),
                lock,
            )
            if journal is not None
            else None
        )
        self._change = threading.local()  # the change the current call made, to wait for
        if restored is not None:
            try:
                self.books.restore(restored)
            except (KeyError, TypeError, ValueError, SpecError) as exc:
                where = journal.path if journal is not None else "the restored state"
                raise FeederError(
                    f"journal {where}: its epoch state is damaged ({exc!r}); move the "
                    "folder away to start a fresh session"
                ) from exc

    def handlers(self) -> dict[str, Handler]:
        """Return the consumer actions this side answers (``status`` is the coordinator's)."""
        return {
            "lease": self._durable(self.lease),
            "heartbeat": self._durable(self.heartbeat),
            "done": self._durable(self.done),
            "resume": self.resume,
        }

    def close(self) -> None:
        """Write what the journal still owes, then stop its writer (after the server)."""
        if self._commit is not None:
            self._commit.close()

    def _durable(self, handler: Handler) -> Handler:
        """``handler``, answering only once the journal holds the change it made."""

        def answer(context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
            self._change.number = 0
            result = handler(context, body)
            if self._commit is not None and self._change.number:
                self._commit.wait(self._change.number)  # outside the lock
            return result

        return answer

    def jobs_status(self) -> dict[str, Any]:
        """Return the status document's ``jobs`` entry (the caller holds the lock)."""
        return self.books.status()

    # --- shared ----------------------------------------------------------------------------

    def journal_changed(self) -> int:
        """Have the journal written again soon (the caller holds the lock); return the
        change's number for :meth:`wait_journal` (0: no journal)."""
        return self._commit.changed() if self._commit is not None else 0

    def wait_journal(self, change: int) -> None:
        """Wait (without the lock) until the journal holds change ``change`` (0: none)."""
        if self._commit is not None and change:
            self._commit.wait(change)

    def _save(self) -> None:
        """Note that the epoch state changed (the caller holds the lock): the journal
        writer saves it, and a :meth:`_durable` call waits for that write. A failed write
        is logged; serving goes on (a full or read-only journal volume costs the restart
        guarantee, not the running epochs)."""
        if self._commit is not None:
            self._change.number = self._commit.changed()

    def current_snapshot(self) -> int | None:
        """The snapshot a new epoch reads: the newest whose slices are all cached and that
        every live node serves (None: none is ready yet). The caller holds the lock."""
        for key in reversed(self.snapshots.live()):
            if self.registry.ready_for(self.snapshots.members(key)) and self.nodes_serve(key):
                return key
        return None

    def _epoch_snapshot(self, params: EpochParams) -> int:
        """Bind ``params``' epoch to a snapshot (once: every consumer of it reads the same)
        and return it. The caller holds the lock.

        Raises:
            SpecError: the request names another snapshot than its epoch reads, or one
                this feeder does not serve (a resume state of another snapshot).
            flight.FlightUnavailableError: no snapshot is cached yet.
        """
        bound = self.books.snapshot_of(params.job, params.epoch)
        asked = params.snapshot_id
        if bound is not None and asked is not None and asked != bound:
            raise SpecError(
                f"job {params.job!r} epoch {params.epoch} reads snapshot {bound}, but this "
                f"request names snapshot {asked}: every consumer of an epoch reads one snapshot"
            )
        key = bound if bound is not None else asked
        if key is not None and key not in self.snapshots:
            raise SpecError(
                f"job {params.job!r} epoch {params.epoch} reads snapshot {key}, but this feeder "
                f"serves snapshot(s) {self.snapshots.live()} (the resume state or pin is of "
                "another snapshot): start a new epoch on the served snapshot, or serve "
                f"snapshot {key} (--snapshot-id {key})"
            )
        if key is None:
            key = self.current_snapshot()
            if key is None:
                reg = self.registry
                cached = sum(1 for s in reg.live_slices() if reg.row_counts[s] is not None)
                raise flight.FlightUnavailableError(
                    f"feeder is not ready: {cached} of {len(reg.live_slices())} slices cached; "
                    "retry"
                )
            self.books.check_unbound(params.job, params.epoch, key)
        if bound is None:
            self.books.bind(params.job, params.epoch, key)
            if self.on_bound is not None:
                self.on_bound()
        return key

    def _row_counts(self, params: EpochParams) -> tuple[int, list[int]]:
        """The snapshot ``params``' epoch reads and its exact row counts over every slice
        id (caller holds the lock); Unavailable until that snapshot is cached."""
        key = self._epoch_snapshot(params)
        members = self.snapshots.members(key)
        if not self.registry.ready_for(members):
            cached = sum(1 for s in members if self.registry.row_counts[s] is not None)
            raise flight.FlightUnavailableError(
                f"snapshot {key} is not cached yet: {cached} of {len(members)} slices; retry"
            )
        return key, self.snapshots.counts(key, self.registry.row_counts)

    def _signer(self, snapshot: int) -> Callable[[EpochParams, SliceRange], str]:
        """Sign tickets of ``snapshot``'s epoch order (one claims template per epoch
        parameters, so each range costs only its signature)."""
        last: list[Any] = [None, None]  # params, their template

        def sign(params: EpochParams, unit: SliceRange) -> str:
            if last[0] is not params:
                last[0], last[1] = params, self._claims(params, unit, snapshot)
            raw = self.signer.sign_range(last[1], unit.slice_id, unit.start, unit.stop)
            return raw.decode("ascii")

        return sign

    @staticmethod
    def _claims(params: EpochParams, unit: SliceRange, snapshot: int) -> TicketClaims:
        return TicketClaims(
            job=params.job,
            snapshot_id=snapshot,
            slice_id=unit.slice_id,
            start=unit.start,
            stop=unit.stop,
            epoch=params.epoch,
            seed=params.seed,
            shuffle=params.shuffle,
            columns=params.columns,
            block_rows=params.mix.block_rows if params.shuffle is Shuffle.MIX else 0,
        )

    def _note_consumer(self, params: EpochParams, consumer: str, mode: str) -> None:
        consumers = self.books.note_consumer(params, consumer, mode)
        if self.metrics is not None:
            self.metrics.consumers.labels(job=self.metrics.job_label(params.job)).set(consumers)

    # --- static mode ------------------------------------------------------------------------

    def flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Return the caller's share of an epoch as signed tickets, in delivery order.

        Raises:
            SpecError: not a command descriptor, or an invalid request.
            flight.FlightUnavailableError: the feeder is not ready yet.
        """
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise SpecError("only command descriptors are served (FlightDescriptor.for_command)")
        request = StaticRequest.from_command(bytes(descriptor.command or b""))
        schema = self.served.project(request.columns)
        # Under the lock: the row counts, the consumer's note and the locations. The
        # plan itself (a pure function of the counts) and the signing (~20 µs a ticket)
        # run outside it, so leases do not queue behind a large plan.
        with self._lock:
            binds = self.books.snapshot_of(request.job, request.epoch) is None
            snapshot, counts = self._row_counts(request)
            groups = locality.slot_groups(self.registry, counts) if request.locality else None
            self.books.note_static_read(request)
            change = self.journal_changed()
        if binds:  # every rank reads the epoch's snapshot, also after a restart
            self.wait_journal(change)
        sign = self._signer(snapshot)
        if request.shuffle is Shuffle.MIX:
            reads = mixplan.static_reads(request, counts, groups)
            locations = self._planned(request, mixplan.read_slices(reads))
            endpoints, total = mixplan.static_endpoints(request, reads, sign, locations.__getitem__)
        else:
            ranges = self._static_ranges(request, counts)
            locations = self._planned(request, {r.slice_id for r in ranges})
            endpoints = [
                flight.FlightEndpoint(
                    sign(request, r),
                    [flight.Location(uri) for uri in locations[r.slice_id]],
                )
                for r in ranges
            ]
            total = sum(r.num_rows for r in ranges)
        if self.metrics is not None:
            self.metrics.plans.labels(job=self.metrics.job_label(request.job)).inc()
        # the descriptor names the snapshot the epoch reads (consumers keep it in their
        # resume state): the request with its snapshot_id set
        answered = flight.FlightDescriptor.for_command(
            replace(request, snapshot_id=snapshot).to_command()
        )
        return flight.FlightInfo(schema, answered, endpoints, total, -1)

    def _planned(self, request: StaticRequest, slices: set[int]) -> dict[int, list[str]]:
        """Note the consumer of a plan made; return every live location of each of
        ``slices`` (under the lock)."""
        with self._lock:
            self._note_consumer(request, f"static:{request.rank}/{request.worker}", "static")
            self._save()
            return self._locations(slices)

    def _locations(self, slices: set[int], near: str | None = None) -> dict[int, list[str]]:
        """Every live location of each of ``slices``, the ones on host ``near`` first
        among those that cache it (the caller holds the lock)."""
        return {sid: self.registry.locations(sid, near) for sid in slices}

    @staticmethod
    def _static_ranges(request: StaticRequest, counts: list[int]) -> list[SliceRange]:
        """The slice ranges of a static request (any shuffle but MIX), in delivery order."""
        if request.resume_from is None:
            ranges = rank_ranges(
                counts,
                seed=request.seed,
                epoch=request.epoch,
                shuffle=request.shuffle.shuffled,
                rank=request.rank,
                world_size=request.world_size,
                drop_last=request.drop_last,
            )
            ranges = split_ranges(
                ranges, part=request.worker, parts=request.num_workers, unit=request.unit
            )
            return skip_rows(ranges, request.skip_rows)
        # elastic resume: this consumer's share of what the old shape left
        stream = epoch_stream(
            counts, seed=request.seed, epoch=request.epoch, shuffle=request.shuffle.shuffled
        )
        return position_ranges(stream, mixplan.request_spans(request, sum(counts)))

    # --- dynamic mode -----------------------------------------------------------------------

    def _book(self, params: EpochParams, counts: list[int]) -> EpochBook:
        """The epoch's book (made on first use), leasing by host with the current placement."""
        groups: list[mixplan.Groups] = []

        def units() -> list[SliceRange]:
            if params.shuffle is not Shuffle.MIX:
                return epoch_stream(
                    counts, seed=params.seed, epoch=params.epoch, shuffle=params.shuffle.shuffled
                )
            if not self.locality:
                return mixplan.lease_units(params, counts)
            groups.append(locality.mix_groups(self.registry, counts))
            return mixplan.grouped_layout(tuple(counts), params.mix, groups[0]).units()

        entry = self.books.open(params, units)
        if groups:
            entry.groups = groups[0]
        locality.index_homes(entry, self.registry, counts)
        return entry

    def _lease_read(self, entry: EpochBook, counts: list[int], unit: SliceRange) -> WindowRead:
        """The MIX window read of a lease of ``unit`` (with the book's host groups, if any)."""
        if entry.groups is None:
            return mixplan.lease_read(entry.params, counts, unit)
        return mixplan.grouped_layout(tuple(counts), entry.params.mix, entry.groups).read(unit)

    def _expire_book(self, entry: EpochBook) -> None:
        expired = entry.book.expire()
        if expired:
            log.warning(
                "job %s epoch %d: %d lease(s) expired, their rest is leased again",
                entry.params.job,
                entry.params.epoch,
                len(expired),
            )
            if self.metrics is not None:
                self.metrics.lease_expiries.labels(
                    job=self.metrics.job_label(entry.params.job)
                ).inc(len(expired))

    def _announce_end(self, entry: EpochBook) -> None:
        if entry.book.finished and not entry.announced_end:
            entry.announced_end = True
            log.info(
                "job %s epoch %d done: %d rows delivered",
                entry.params.job,
                entry.params.epoch,
                entry.book.total_rows,
            )

    def lease(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``lease``: the next unit of the job's epoch, or none (``epoch_done`` / retry)."""
        request = LeaseRequest.from_body(body)
        self.served.project(request.columns)
        with self._lock:
            gone = self.books.retired(request.job, request.epoch)
            if gone is not None and gone.finished:
                return {"unit": None, "epoch_done": True, "retry_after": 0.0}
            snapshot, counts = self._row_counts(request)
            entry = self._book(request, counts)
            self._expire_book(entry)
            lease = entry.book.lease(request.consumer, request.host)
            self._note_consumer(request, f"dynamic:{request.consumer}", "dynamic")
            self._save()
            if lease is None:
                self._announce_end(entry)
                return {
                    "unit": None,
                    "epoch_done": entry.book.finished,
                    "retry_after": min(1.0, self.lease_seconds / 4),
                }
            unit = lease.unit
            mixed = entry.params.shuffle is Shuffle.MIX
            read: WindowRead | None = None
            if mixed:
                read = self._lease_read(entry, counts, unit)
                where = self._locations(mixplan.read_slices([read]), request.host)
            else:
                where = {unit.slice_id: self.registry.locations(unit.slice_id, request.host)}
            first = {s: locs[0] for s, locs in where.items() if locs}
            near = locality.local_rows(self.registry, request.host, unit.num_rows, first, read)
            self.books.note_rows(request.job, unit.num_rows, near)
        if self.metrics is not None:
            job = self.metrics.job_label(request.job)
            self.metrics.leases.labels(job=job).inc()
            self.metrics.rows_leased.labels(job=job, local="true").inc(near)
            self.metrics.rows_leased.labels(job=job, local="false").inc(unit.num_rows - near)
        sign = self._signer(snapshot)
        if read is not None:  # MIX; tickets are signed outside the lock
            window = mixplan.lease_window(entry.params, read, sign, where.__getitem__)
            return {
                "lease": lease.lease_id,
                "unit": {"slice_id": unit.slice_id, "start": unit.start, "stop": unit.stop},
                **window,
                "lease_seconds": self.lease_seconds,
                "session": self.signer.session_id,
                "snapshot_id": snapshot,
            }
        return {
            "lease": lease.lease_id,
            "unit": {"slice_id": unit.slice_id, "start": unit.start, "stop": unit.stop},
            "ticket": sign(request, unit),
            "locations": where[unit.slice_id],
            "lease_seconds": self.lease_seconds,
            "session": self.signer.session_id,
            "snapshot_id": snapshot,
        }

    def _lease_call(self, body: bytes, what: str) -> tuple[dict[str, Any], EpochBook | None, str]:
        """Parse a heartbeat/done body; its book, or None for a finished and dropped epoch."""
        data = parse_json(body, what)
        self._check_session(data)
        job, epoch = field_job(data), field_int(data, "epoch", 0, 2**32 - 1)
        consumer = field_name(data, "consumer")
        gone = self.books.retired(job, epoch)
        if gone is not None and gone.finished:
            return data, None, consumer
        entry = self.books.get(job, epoch)
        if entry is None:
            raise SpecError(f"job {job!r} has no dynamic epoch {epoch}: lease first")
        return data, entry, consumer

    def _check_session(self, data: dict[str, Any]) -> None:
        """RestartedError for a body naming another session (its ``session`` or lease ids)."""
        mine = self.signer.session_id
        check_session(data.get("session"), mine, "call")
        progress = data.get("progress")
        leases = [*progress] if isinstance(progress, dict) else []
        if isinstance(data.get("lease"), str):
            leases.append(data["lease"])
        for lease_id in leases:
            if isinstance(lease_id, str) and "." in lease_id:
                check_session(lease_id.split(".", 1)[0], mine, "lease")

    def heartbeat(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``heartbeat``: extend a consumer's leases; answer the ones it no longer holds."""
        with self._lock:
            data, entry, consumer = self._lease_call(body, "heartbeat")
            progress = data.get("progress", {})
            if not isinstance(progress, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in progress.items()
            ):
                raise SpecError("progress: must map lease ids to rows delivered")
            if entry is None:  # a finished, dropped epoch holds no lease
                return {"lost": list(progress)}
            self._expire_book(entry)
            lost = entry.book.heartbeat(consumer, progress)
            self._save()
            why = {i: w for i in lost if (w := entry.book.why_lost(i)) is not None}
        return {"lost": lost, "why": why} if why else {"lost": lost}

    def done(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``done``: acknowledge a leased unit."""
        with self._lock:
            data, entry, consumer = self._lease_call(body, "done")
            lease_id = field_name(data, "lease")
            if entry is None:
                return {"acknowledged": False}
            acknowledged = entry.book.done(consumer, lease_id)
            self._save()
            self._announce_end(entry)
            why = None if acknowledged else entry.book.why_lost(lease_id)
        answer: dict[str, Any] = {"acknowledged": acknowledged}
        if why:
            answer["why"] = why
        return answer

    # --- failover ---------------------------------------------------------------------------

    def resume(self, context: flight.ServerCallContext, body: bytes) -> dict[str, Any]:
        """``resume``: re-sign the rest of the caller's ticket, with the live locations."""
        data = parse_json(body, "resume")
        raw = data.get("ticket")
        if not isinstance(raw, str):
            raise SpecError("ticket: must be the ticket string")
        claims = self.signer.verify(raw.encode("utf-8", "replace"))
        job = caller_job(context)
        if job != claims.job:
            raise flight.FlightUnauthorizedError(
                f"ticket was issued to job {claims.job!r}, not to the caller's job {job!r}"
            )
        delivered = field_int(data, "delivered")
        start = min(claims.start + delivered, claims.stop)
        with self._lock:
            if claims.snapshot_id not in self.snapshots:
                raise flight.FlightUnauthorizedError(
                    f"ticket is for snapshot {claims.snapshot_id}, which this feeder no longer "
                    f"serves (it serves {self.snapshots.live()}): start the next epoch"
                )
            locations = self.registry.locations(claims.slice_id)
        if not locations:
            raise flight.FlightUnavailableError("no live data node right now; retry")
        ticket = self.signer.sign(replace(claims, start=start)).decode("ascii")
        return {"ticket": ticket, "locations": locations, "session": self.signer.session_id}
