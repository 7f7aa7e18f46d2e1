"""A plain Arrow client of a feeder: no torch, no pyspark (an import-linter contract).

``FeederClient(endpoint).stream(epoch, ...)`` yields ``pyarrow.RecordBatch``es
of one consumer's share of an epoch:

- static mode (DDP): one ``get_flight_info`` call returns this rank/worker's
  slice ranges as signed tickets in delivery order; each is read from its
  first live location;
- dynamic mode: ``lease`` a unit, stream it, ``done``; a background thread
  sends ``heartbeat`` with the rows delivered so far.

Failover: when a data-node stream breaks, the client asks the coordinator to
``resume`` the ticket at the rows already delivered (a fresh ticket for the
rest, with the live locations) and reads on from the next node, for up to
``retry_seconds``. A node that keeps the stream open but sends nothing for
``stall_seconds`` while the client waits (hung, SIGSTOPped, partitioned) counts
as broken the same way. A coordinator that cannot be reached for ``timeout``
seconds raises :class:`FeederError`; wrong token → :class:`AuthError`; a bad
request (unknown column, ``rank >= world_size``) → :class:`SpecError`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.client.allocator import tune_for_streaming
from feeder.client.windows import is_mixed, read_static_windows, read_window
from feeder.protocol.auth import call_options, connect
from feeder.protocol.chunking import MAX_UNIT, Chunking
from feeder.protocol.config import TLSConfig, load_token
from feeder.protocol.messages import LeaseRequest, StaticRequest
from feeder.protocol.mix import MixParams
from feeder.protocol.modes import Mode
from feeder.protocol.shuffle_kind import Shuffle, parse_shuffle
from jobs.errors import AuthError, FeederError, SpecError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors after which a data-node read is retried on another location.
_RETRIABLE = (
    flight.FlightUnavailableError,
    flight.FlightInternalError,
    flight.FlightTimedOutError,
    flight.FlightCancelledError,
    flight.FlightServerError,
    OSError,
)
_OWN_RETRY_MARK = "; retry"  # how the coordinator says "alive, but not now"
SUSPECT_SECONDS = 30.0  # a location that failed is tried last for this long
DEFAULT_STALL_SECONDS = 60.0  # > the time a node takes to materialise a slice on failover
_AHEAD_BATCHES = 4  # batches a read-ahead range may buffer
_END = object()


def _clean(exc: BaseException) -> str:
    """A Flight error's message without the server-side traceback detail."""
    return str(exc).split(". Detail:")[0].strip()


class FeederClient:
    """Reads one job's epochs from a feeder at ``endpoint`` (``grpc://`` or ``grpc+tls://``).

    ``token=None`` reads ``ICEFEED_TOKEN`` / ``ICEFEED_TOKEN_FILE``. ``timeout``
    bounds every coordinator call and how long an unreachable coordinator is
    retried; ``retry_seconds`` bounds failover of one slice range;
    ``ready_timeout`` how long to wait for a feeder that is still caching;
    ``read_ahead`` how many further slice ranges a static-mode stream reads
    concurrently (0, the default: one at a time — on 2 cores read-ahead measured
    slower; see the ``client_stream_*_read_ahead`` benchmark cases);
    ``stall_seconds`` how long the client waits for a data node's next batch (or its
    first, which a node sends only once it has the slice: keep it above the time to
    materialise one slice from table storage) before it treats the node as lost.
    The first client of a process fixes glibc's heap thresholds so that received
    buffers are reused, not re-faulted (:mod:`feeder.client.allocator`;
    ``ICEFEED_MALLOC_TUNING=0`` turns that off).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        job: str = "default",
        token: str | SecretStr | None = None,
        tls: TLSConfig | None = None,
        timeout: float = 30.0,
        retry_seconds: float = 120.0,
        ready_timeout: float = 600.0,
        read_ahead: int = 0,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise SpecError(f"endpoint: {endpoint!r} must look like grpc://host:port")
        if not isinstance(job, str) or not job:
            raise SpecError(f"job: {job!r} must be a non-empty string")
        if timeout <= 0 or retry_seconds <= 0 or ready_timeout <= 0 or stall_seconds <= 0:
            raise SpecError("timeout, retry_seconds, ready_timeout and stall_seconds must be > 0")
        if not isinstance(read_ahead, int) or not 0 <= read_ahead <= 8:
            raise SpecError(f"read_ahead: {read_ahead!r} must be an integer in 0..8")
        tune_for_streaming()
        self.read_ahead = read_ahead
        self.endpoint = endpoint
        self.job = job
        self.tls = tls
        self.timeout = float(timeout)
        self.retry_seconds = float(retry_seconds)
        self.ready_timeout = float(ready_timeout)
        self.stall_seconds = float(stall_seconds)
        self._watch = _StallWatch(self.stall_seconds)
        self._token = load_token(token)
        self._lock = threading.Lock()
        self._coordinator: flight.FlightClient | None = None
        self._nodes: dict[str, flight.FlightClient] = {}
        self._suspects: dict[str, float] = {}  # location -> when it last failed

    def __repr__(self) -> str:
        return f"FeederClient({self.endpoint!r}, job={self.job!r})"

    def __enter__(self) -> FeederClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (the client can be used again afterwards)."""
        with self._lock:
            clients = list(self._nodes.values())
            if self._coordinator is not None:
                clients.append(self._coordinator)
            self._nodes.clear()
            self._coordinator = None
        for client in clients:
            client.close()

    # --- connections --------------------------------------------------------------------

    def _options(
        self, timeout: float | None, chunks: Chunking | None = None
    ) -> flight.FlightCallOptions:
        return call_options(self._token, self.job, timeout, chunks=chunks)

    def _coord_client(self) -> flight.FlightClient:
        with self._lock:
            if self._coordinator is None:
                self._coordinator = connect(self.endpoint, tls=self.tls)
            return self._coordinator

    def _node_client(self, location: str) -> flight.FlightClient:
        with self._lock:
            client = self._nodes.get(location)
            if client is None:
                client = self._nodes[location] = connect(location, tls=self.tls)
            return client

    def _order(self, locations: list[str]) -> list[str]:
        """Locations that failed in the last ``SUSPECT_SECONDS`` go last."""
        now = time.monotonic()
        with self._lock:
            recent = {loc for loc, at in self._suspects.items() if now - at < SUSPECT_SECONDS}
        return [x for x in locations if x not in recent] + [x for x in locations if x in recent]

    def _drop_node(self, location: str) -> None:
        with self._lock:
            self._suspects[location] = time.monotonic()
            client = self._nodes.pop(location, None)
        if client is not None:
            client.close()

    def _call(self, what: str, fn: Callable[[flight.FlightClient, Any], T]) -> T:
        """Run one coordinator call, retrying while it is unreachable or not ready."""
        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                return fn(self._coord_client(), self._options(self.timeout))
            except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError) as exc:
                raise AuthError(f"feeder at {self.endpoint} refused {what}: {_clean(exc)}") from exc
            except pa.ArrowInvalid as exc:
                raise SpecError(_clean(exc)) from exc
            except (flight.FlightServerError, pa.ArrowKeyError, pa.ArrowNotImplementedError) as exc:
                raise FeederError(
                    f"feeder at {self.endpoint}: {what} failed: {_clean(exc)}"
                ) from exc
            except _RETRIABLE as exc:
                waited = time.monotonic() - start
                alive = _OWN_RETRY_MARK in str(exc)
                if alive and waited > self.ready_timeout:
                    raise FeederError(
                        f"feeder at {self.endpoint} still not ready after {waited:.0f}s: "
                        f"{_clean(exc)}"
                    ) from exc
                if not alive and waited > self.timeout:
                    raise FeederError(
                        f"coordinator at {self.endpoint} unreachable for {waited:.0f}s "
                        f"({what}): {_clean(exc)}; is the feeder running?"
                    ) from exc
                if not alive:
                    with self._lock:
                        self._coordinator = None
            time.sleep(delay)  # retry backoff, not synchronisation
            delay = min(delay * 2, 1.0)

    def _action(self, name: str, body: Any = None) -> Any:
        payload = json.dumps(body if body is not None else {}).encode()

        def run(client: flight.FlightClient, options: Any) -> Any:
            results = list(client.do_action(flight.Action(name, payload), options))
            return json.loads(results[0].body.to_pybytes()) if results else {}

        return self._call(name, run)

    # --- public API -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The feeder's status document (PROTOCOL.md)."""
        result: dict[str, Any] = self._action("status")
        return result

    def schema(self, columns: Sequence[str] | None = None) -> pa.Schema:
        """The schema of this job's batches for ``columns`` (None: every served column)."""
        command = StaticRequest(job=self.job, columns=_cols(columns)).to_command()
        descriptor = flight.FlightDescriptor.for_command(command)
        result = self._call("schema", lambda c, o: c.get_schema(descriptor, o))
        return result.schema

    def plan(
        self,
        epoch: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool | str | Shuffle = True,
        drop_last: bool = True,
        columns: Sequence[str] | None = None,
        worker: int = 0,
        num_workers: int = 1,
        unit: int = 1,
        skip_rows: int = 0,
        mix: MixParams | None = None,
    ) -> flight.FlightInfo:
        """Static mode: this consumer's share of ``epoch`` (schema, row count, endpoints).

        Raises SpecError for an invalid request (e.g. ``rank >= world_size``).
        """
        request = StaticRequest(
            job=self.job,
            epoch=epoch,
            seed=seed,
            shuffle=parse_shuffle(shuffle),
            columns=_cols(columns),
            mix=mix or MixParams(),
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            worker=worker,
            num_workers=num_workers,
            unit=unit,
            skip_rows=skip_rows,
        )
        descriptor = flight.FlightDescriptor.for_command(request.to_command())
        info: flight.FlightInfo = self._call("plan", lambda c, o: c.get_flight_info(descriptor, o))
        return info

    def stream(
        self,
        epoch: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        mode: Mode | str = Mode.STATIC,
        seed: int = 0,
        shuffle: bool | str | Shuffle = True,
        drop_last: bool = True,
        columns: Sequence[str] | None = None,
        worker: int = 0,
        num_workers: int = 1,
        unit: int = 1,
        skip_rows: int = 0,
        mix: MixParams | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield this consumer's batches of ``epoch``; see the module docstring.

        Static mode: rank ``rank`` of ``world_size`` gets its equal part, worker
        ``worker`` of ``num_workers`` its piece in whole ``unit``-row units, the
        first ``skip_rows`` rows left out (resume). ``shuffle``: True (MIX, whose
        batches represent the whole table; ``mix`` sets its knobs), ``"slice"``
        (slices, then rows inside a slice) or False (table order). Dynamic mode: every call is a
        consumer leasing units until the epoch is done (``drop_last``, ``unit``
        and the split do not apply; ``skip_rows`` must be 0). Errors are raised
        when the iterator is first advanced.
        """
        try:
            chosen = Mode(mode.value if isinstance(mode, Mode) else mode)
        except ValueError as exc:
            raise SpecError(f"mode: {mode!r} is not one of static, dynamic") from exc
        if chosen is Mode.STATIC:
            return self._static(
                epoch,
                rank=rank,
                world_size=world_size,
                seed=seed,
                shuffle=shuffle,
                drop_last=drop_last,
                columns=columns,
                worker=worker,
                num_workers=num_workers,
                unit=unit,
                skip_rows=skip_rows,
                mix=mix,
            )
        if skip_rows:
            raise SpecError("skip_rows: dynamic mode cannot skip rows (leases track progress)")
        if isinstance(unit, bool) or not isinstance(unit, int) or not 1 <= unit <= MAX_UNIT:
            raise SpecError(f"unit: {unit!r} must be an integer in [1, {MAX_UNIT}]")
        request = LeaseRequest(
            job=self.job,
            epoch=epoch,
            seed=seed,
            shuffle=parse_shuffle(shuffle),
            columns=_cols(columns),
            mix=mix or MixParams(),
            consumer=f"{os.uname().nodename}-{os.getpid()}-r{rank}w{worker}-{uuid.uuid4().hex[:8]}",
        )
        return self._dynamic(request, unit)

    # --- static mode ----------------------------------------------------------------------

    def _static(self, epoch: int, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        info = self.plan(epoch, **kwargs)
        if is_mixed(info.endpoints):
            read = functools.partial(self._read, unit=1)
            yield from read_static_windows(
                info.endpoints, seed=int(kwargs.get("seed", 0)), epoch=epoch, read=read
            )
            return
        ranges = [
            (e.ticket.ticket.decode("ascii"), [loc.uri.decode() for loc in e.locations])
            for e in info.endpoints
        ]
        unit = int(kwargs.get("unit", 1))
        if self.read_ahead == 0 or len(ranges) < 2:
            position = 0
            for ticket, locations in ranges:
                for batch in self._read(ticket, locations, position=position, unit=unit):
                    position += batch.num_rows
                    yield batch
            return
        yield from self._read_ahead(ranges, unit)

    def _read_ahead(
        self, ranges: list[tuple[str, list[str]]], unit: int
    ) -> Iterator[pa.RecordBatch]:
        """Yield ranges in order while up to ``read_ahead`` later ones stream in the background.

        One Flight stream is the ceiling of one consumer; reading the next ranges
        (often from another node) at the same time passes it. Each background range
        buffers at most ``_AHEAD_BATCHES`` batches; errors surface in order. A range
        opened ahead does not know the stream position it will start at, so its
        batches are cut on ``unit`` from its own start (see :mod:`feeder.protocol.chunking`).
        """
        stop = threading.Event()
        pending: deque[queue.Queue[Any]] = deque()
        threads: list[threading.Thread] = []

        def pump(ticket: str, locations: list[str], out: queue.Queue[Any]) -> None:
            item: Any
            try:
                for batch in self._read(ticket, locations, unit=unit):
                    while not stop.is_set():
                        try:
                            out.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item = _END
            except BaseException as exc:  # handed to the consumer, raised there in order
                item = exc
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def start(index: int) -> None:
            out: queue.Queue[Any] = queue.Queue(maxsize=_AHEAD_BATCHES)
            thread = threading.Thread(
                target=pump, args=(*ranges[index], out), name="icefeed-read-ahead", daemon=True
            )
            thread.start()
            threads.append(thread)
            pending.append(out)

        following = 0
        try:
            while following < len(ranges) and len(pending) <= self.read_ahead:
                start(following)
                following += 1
            while pending:
                out = pending.popleft()
                while True:
                    item = out.get()
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                if following < len(ranges):
                    start(following)
                    following += 1
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=self.timeout)

    # --- dynamic mode ----------------------------------------------------------------------

    def _dynamic(self, request: LeaseRequest, unit: int) -> Iterator[pa.RecordBatch]:
        body = json.loads(request.to_body())
        beat = _Heartbeater(self, request)
        position = 0  # rows yielded, for the chunking hint
        try:
            while True:
                answer = self._action("lease", body)
                if answer.get("unit") is None:
                    if answer.get("epoch_done"):
                        return
                    beat.wait(float(answer.get("retry_after", 0.5)))
                    continue
                lease_id = answer["lease"]
                beat.track(lease_id, float(answer.get("lease_seconds", 30.0)))
                completed = True
                for batch in self._unit_batches(answer, request, position, unit):
                    if beat.is_lost(lease_id):
                        completed = False
                        log.warning("lease %s expired mid-unit; moving on", lease_id)
                        break
                    position += batch.num_rows
                    yield batch
                    beat.delivered(lease_id, batch.num_rows)
                if completed and not beat.is_lost(lease_id):
                    self._action(
                        "done",
                        {
                            "job": request.job,
                            "epoch": request.epoch,
                            "consumer": request.consumer,
                            "lease": lease_id,
                        },
                    )
                beat.untrack(lease_id)
        finally:
            beat.stop()

    def _unit_batches(
        self, answer: dict[str, Any], request: LeaseRequest, position: int, unit: int
    ) -> Iterator[pa.RecordBatch]:
        """The batches of one leased unit: a slice range, or a MIX window's kept rows."""
        if "pieces" not in answer:
            yield from self._read(
                answer["ticket"], answer["locations"], position=position, unit=unit
            )
            return
        pieces = [(p["ticket"], list(p["locations"])) for p in answer["pieces"]]
        read = functools.partial(self._read, unit=1)
        mixed = read_window(
            answer["window"], pieces, seed=request.seed, epoch=request.epoch, read=read
        )
        if mixed is not None:
            yield mixed

    # --- reading one slice range, with failover ---------------------------------------------

    def _read(
        self, ticket: str, locations: list[str], *, position: int = 0, unit: int = 1
    ) -> Iterator[pa.RecordBatch]:
        """Yield the rows of one ticket, failing over to other nodes at the rows delivered.

        ``position`` (rows the stream yielded before this ticket) and ``unit`` (the
        consumer's batch size) tell each node where to cut batches, so the consumer's
        batches do not straddle them (:mod:`feeder.protocol.chunking`).
        """
        deadline: float | None = None
        delay = 0.05
        last: BaseException | None = None
        while True:
            delivered = 0
            for location in self._order(locations):
                try:
                    chunks = Chunking.at(position + delivered, unit)
                    for batch in self._node_batches(location, ticket, chunks):
                        if batch.num_rows == 0:
                            continue
                        delivered += batch.num_rows
                        yield batch
                    return
                except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError) as exc:
                    raise AuthError(
                        f"data node {location} refused a ticket: {_clean(exc)}"
                    ) from exc
                except pa.ArrowInvalid as exc:
                    raise FeederError(f"data node {location}: {_clean(exc)}") from exc
                except _RETRIABLE as exc:
                    last = exc
                    log.warning(
                        "data node %s failed after %d rows of a range (%s); failing over",
                        location,
                        delivered,
                        _clean(exc)[:200],
                    )
                    self._drop_node(location)
                    if delivered:
                        break
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.retry_seconds
            if now > deadline:
                raise FeederError(
                    f"no data node could serve a slice range for {self.retry_seconds:.0f}s; "
                    f"last error: {_clean(last) if last else 'no live location'}"
                )
            if not delivered:
                time.sleep(delay)  # retry backoff while a replacement node starts
                delay = min(delay * 2, 1.0)
            answer = self._action("resume", {"ticket": ticket, "delivered": delivered})
            # progress of a lease keeps counting from the unit's start across resumes
            ticket, locations = answer["ticket"], list(answer["locations"])
            position += delivered  # the new ticket starts where the delivered rows end

    def _node_batches(
        self, location: str, ticket: str, chunks: Chunking | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield one ``do_get``'s batches, read in the caller's thread.

        Raises FlightTimedOutError when the node sends nothing for ``stall_seconds``
        while the caller waits: a gRPC read has no deadline of its own, and a node
        that keeps its connection open (e.g. SIGSTOPped) would block it forever.
        ``do_get`` (which waits for the stream's schema) runs on a helper thread the
        caller waits for; the reads themselves run in the caller's thread (no
        hand-off per batch) under the client's :class:`_StallWatch`, which cancels a
        read blocked for longer than ``stall_seconds``. Time the caller spends
        between reads (a training step) never counts.
        """
        reader = self._open_stream(location, ticket, chunks)
        read = self._watch.track(reader)
        finished = False
        try:
            while True:
                read.waiting_since = time.monotonic()
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    finished = True
                    return
                except Exception:  # a cancelled read may surface as any Arrow/Flight error
                    if read.stalled:
                        raise self._stalled(location) from None
                    raise
                finally:
                    read.waiting_since = None
                if read.stalled:  # cancelled just as the batch arrived
                    raise self._stalled(location)
                yield chunk.data
        finally:
            self._watch.untrack(read)
            if not finished:  # stalled, failed, or the caller stopped early: end the call
                reader.cancel()

    def _stalled(self, location: str) -> flight.FlightTimedOutError:
        return flight.FlightTimedOutError(
            f"data node {location} sent nothing for {self.stall_seconds:g}s "
            "(stall_seconds); treating it as lost"
        )

    def _open_stream(
        self, location: str, ticket: str, chunks: Chunking | None = None
    ) -> flight.FlightStreamReader:
        """``do_get`` on a helper thread; FlightTimedOutError if it takes ``stall_seconds``."""
        client = self._node_client(location)
        done = threading.Event()
        lock = threading.Lock()
        result: list[Any] = []
        abandoned = False

        def start() -> None:
            nonlocal abandoned
            item: Any
            try:
                item = client.do_get(
                    flight.Ticket(ticket.encode("ascii")), self._options(None, chunks)
                )
            except BaseException as exc:  # handed to the caller, raised there
                item = exc
            with lock:
                if abandoned:  # the caller gave up while the stream was starting
                    if isinstance(item, flight.FlightStreamReader):
                        item.cancel()
                    return
                result.append(item)
            done.set()

        threading.Thread(target=start, name="icefeed-node-open", daemon=True).start()
        if not done.wait(self.stall_seconds):
            with lock:
                if not result:
                    abandoned = True
                    raise self._stalled(location)
        item = result[0]
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]


class _Read:
    """One node stream the :class:`_StallWatch` looks after."""

    __slots__ = ("reader", "stalled", "waiting_since")

    def __init__(self, reader: flight.FlightStreamReader) -> None:
        self.reader = reader
        self.waiting_since: float | None = None
        self.stalled = False


class _StallWatch:
    """Cancels node reads blocked for more than ``stall_seconds`` (one thread per client).

    The thread runs only while reads are tracked and wakes every
    ``min(stall_seconds / 4, 0.5)`` seconds.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._reads: set[_Read] = set()
        self._thread: threading.Thread | None = None

    def track(self, reader: flight.FlightStreamReader) -> _Read:
        read = _Read(reader)
        with self._lock:
            self._reads.add(read)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="icefeed-stall-watch", daemon=True
                )
                self._thread.start()
        return read

    def untrack(self, read: _Read) -> None:
        with self._lock:
            self._reads.discard(read)

    def _run(self) -> None:
        interval = min(self.stall_seconds / 4, 0.5)
        while True:
            time.sleep(interval)
            now = time.monotonic()
            with self._lock:
                if not self._reads:
                    self._thread = None
                    return
                late = [
                    r
                    for r in self._reads
                    if r.waiting_since is not None and now - r.waiting_since > self.stall_seconds
                ]
                for read in late:
                    read.stalled = True
                    self._reads.discard(read)
            for read in late:
                read.reader.cancel()


class _Heartbeater:
    """Background ``heartbeat`` of one dynamic-mode consumer's leases."""

    def __init__(self, client: FeederClient, request: LeaseRequest) -> None:
        self._client = client
        self._request = request
        self._lock = threading.Lock()
        self._progress: dict[str, int] = {}
        self._lost: set[str] = set()
        self._interval = 10.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, lease_id: str, lease_seconds: float) -> None:
        """Start reporting ``lease_id`` (heartbeats every third of the lease time)."""
        with self._lock:
            self._progress[lease_id] = 0
            self._interval = max(0.05, lease_seconds / 3)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="icefeed-lease-heartbeat", daemon=True
                )
                self._thread.start()

    def delivered(self, lease_id: str, rows: int) -> None:
        """Count rows of ``lease_id`` handed to the consumer."""
        with self._lock:
            if lease_id in self._progress:
                self._progress[lease_id] += rows

    def is_lost(self, lease_id: str) -> bool:
        """True once the coordinator said the lease expired."""
        with self._lock:
            return lease_id in self._lost

    def untrack(self, lease_id: str) -> None:
        """Stop reporting ``lease_id``."""
        with self._lock:
            self._progress.pop(lease_id, None)
            self._lost.discard(lease_id)

    def wait(self, seconds: float) -> None:
        """Wait before asking for a lease again (bounded; wakes early on stop)."""
        self._stop.wait(max(0.01, min(seconds, 5.0)))

    def stop(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._client.timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                progress = dict(self._progress)
            if not progress:
                continue
            body = {
                "job": self._request.job,
                "epoch": self._request.epoch,
                "consumer": self._request.consumer,
                "progress": progress,
            }
            try:
                answer = self._client._action("heartbeat", body)
            except FeederError as exc:
                log.warning("lease heartbeat failed: %s", exc)
                continue
            with self._lock:
                self._lost.update(answer.get("lost", []))


def _cols(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        raise SpecError("columns: give a list of column names, not one string")
    return tuple(columns)
