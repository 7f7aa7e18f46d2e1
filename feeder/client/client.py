"""A plain Arrow client of a feeder: no torch, no pyspark (an import-linter contract).

``FeederClient(endpoint).stream(epoch, ...)`` yields ``pyarrow.RecordBatch``es
of one consumer's share of an epoch, described by a :class:`ReadRequest`:

- static mode (DDP): one ``get_flight_info`` call returns this rank/worker's
  slice ranges as signed tickets in delivery order; each is read from its
  first live location;
- dynamic mode: ``lease`` a unit, stream it, ``done``; a background thread
  sends ``heartbeat`` with the rows delivered so far
  (:mod:`feeder.client.heartbeat`).

Failover (:mod:`feeder.client.failover`): when a data-node stream breaks, the
client asks the coordinator to ``resume`` the ticket at the rows already
delivered and reads on from the next node, for up to ``retry_seconds``. A node
that keeps the stream open but sends nothing for ``stall_seconds`` while the
client waits (:mod:`feeder.client.stall_watch`) counts as broken the same way.
A coordinator that cannot be reached for ``timeout`` seconds raises
:class:`FeederError`; one that answered before and went away (a driver restart)
is retried for ``restart_seconds``, and a feeder with a journal continues the
epoch exactly once (docs/feeder.md, *Restarts*); wrong token → :class:`AuthError`;
a bad request (unknown column, ``rank >= world_size``) → :class:`SpecError`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from pydantic import SecretStr

from feeder.client.allocator import tune_for_streaming
from feeder.client.coordinator_calls import READY_TIMEOUT, RESTART_SECONDS, CoordinatorCalls
from feeder.client.failover import NodeReader
from feeder.client.heartbeat import LeaseHeartbeater
from feeder.client.local_reads import LocalReads
from feeder.client.read_ahead import read_ahead
from feeder.client.request import ReadRequest, column_names
from feeder.client.stall_watch import DEFAULT_STALL_SECONDS
from feeder.client.windows import WindowScratch, is_mixed, read_static_windows, read_unit
from feeder.protocol.config import TLSConfig, load_token
from feeder.protocol.hosts import local_host
from feeder.protocol.messages import LeaseRequest, StaticRequest
from feeder.protocol.modes import Mode
from jobs.errors import SpecError

log = logging.getLogger(__name__)


class FeederClient:
    """Reads one job's epochs from a feeder at ``endpoint`` (``grpc://`` or ``grpc+tls://``).

    The first client of a process fixes glibc's heap thresholds so that received
    buffers are reused, not re-faulted (:mod:`feeder.client.allocator`;
    ``ICEFEED_MALLOC_TUNING=0`` turns that off).

    Args:
        endpoint: the coordinator's address.
        job: this training job's name (its own epoch state on the feeder).
        token: the bearer token; None reads ``ICEFEED_TOKEN`` / ``ICEFEED_TOKEN_FILE``.
        tls: TLS settings for ``grpc+tls://``.
        timeout: bounds every coordinator call and how long a coordinator never
            reached is retried.
        retry_seconds: bounds failover of one slice range.
        ready_timeout: how long to wait for a feeder that is still caching.
        read_ahead: how many further slice ranges a static-mode stream reads
            concurrently, 0..8 (0, the default: one at a time — on 2 cores read-ahead
            measured slower; see the ``client_stream_*_read_ahead`` benchmark cases).
        stall_seconds: how long the client waits for a data node's next batch (or
            its first, which a node sends only once it has the slice: keep it above
            the time to materialise one slice from table storage) before it treats
            the node as lost.
        restart_seconds: how long a coordinator that answered before is retried while
            unreachable (a driver restart), before :class:`FeederError`; that wait
            does not count against ``retry_seconds``.
        local_reads: read the slices of data nodes on this host from their cache files
            (descriptors handed over their local socket, mapped read-only) instead of over
            gRPC, where a node offers it (:mod:`feeder.client.local_reads`); False: always
            Flight. :meth:`read_counts` says how many rows came which way.
        host: the host this consumer runs on, sent with its leases so the coordinator
            leases this host's work first (locality, docs/feeder.md); None:
            ``$ICEFEED_HOST``, else the hostname (:func:`feeder.protocol.hosts.local_host`).

    Raises:
        SpecError: an argument is invalid.
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
        ready_timeout: float = READY_TIMEOUT,
        read_ahead: int = 0,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        restart_seconds: float = RESTART_SECONDS,
        local_reads: bool = True,
        host: str | None = None,
    ) -> None:
        self.host = local_host(host)
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise SpecError(f"endpoint: {endpoint!r} must look like grpc://host:port")
        if not isinstance(job, str) or not job:
            raise SpecError(f"job: {job!r} must be a non-empty string")
        if min(timeout, retry_seconds, ready_timeout, stall_seconds, restart_seconds) <= 0:
            raise SpecError(
                "timeout, retry_seconds, ready_timeout, stall_seconds and restart_seconds "
                "must be > 0"
            )
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
        self.restart_seconds = float(restart_seconds)
        self._coordinator = CoordinatorCalls(
            endpoint,
            job=job,
            token=load_token(token),
            tls=tls,
            timeout=self.timeout,
            ready_timeout=self.ready_timeout,
            restart_seconds=self.restart_seconds,
            host=self.host,
        )
        if not isinstance(local_reads, bool):
            raise SpecError(f"local_reads: {local_reads!r} must be true or false")
        self.local_reads = local_reads
        local = (
            LocalReads(token=self._coordinator.token, job=job, sockets=self._local_sockets)
            if local_reads
            else None
        )
        self._nodes = NodeReader(
            options=self._coordinator.options,
            resume=self._resume,
            tls=tls,
            retry_seconds=self.retry_seconds,
            stall_seconds=self.stall_seconds,
            local=local,
        )

    def __repr__(self) -> str:
        return f"FeederClient({self.endpoint!r}, job={self.job!r})"

    def __enter__(self) -> FeederClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (the client can be used again afterwards)."""
        self._nodes.close()
        self._coordinator.close()

    def status(self) -> dict[str, Any]:
        """Return the feeder's status document (PROTOCOL.md).

        Raises:
            AuthError: the token was refused.
            FeederError: the coordinator could not be reached within ``timeout``.
        """
        result: dict[str, Any] = self._coordinator.action("status")
        return result

    def refresh(self) -> dict[str, Any]:
        """Have the feeder serve its table's current snapshot to each job's next epoch.

        Returns:
            What the refresh did (PROTOCOL.md, ``refresh``): ``changed`` and, after a
            change, the slices kept and added and the storage bytes read so far.

        Raises:
            AuthError: the token was refused.
            FeederError: the coordinator could not be reached within ``timeout``, cannot
                refresh, or the table no longer resolves (the message says why).
        """
        result: dict[str, Any] = self._coordinator.action("refresh")
        return result

    def read_counts(self) -> dict[str, int]:
        """Rows this client read so far: ``rows_local`` from co-located nodes' cache files,
        ``rows_flight`` over Flight."""
        return self._nodes.read_counts()

    def _local_sockets(self) -> dict[str, str]:
        """The live data nodes' local sockets by location (from the status document)."""
        nodes = self.status().get("nodes", [])
        return {
            n["location"]: n["local_socket"]
            for n in nodes
            if n.get("alive") and isinstance(n.get("local_socket"), str)
        }

    def schema(self, columns: Sequence[str] | None = None) -> pa.Schema:
        """Return the schema of this job's batches.

        Args:
            columns: the projection; None for every served column.

        Raises:
            SpecError: an unknown column.
            AuthError, FeederError: as :meth:`status`.
        """
        command = StaticRequest(job=self.job, columns=column_names(columns)).to_command()
        descriptor = flight.FlightDescriptor.for_command(command)
        result = self._coordinator.call("schema", lambda c, o: c.get_schema(descriptor, o))
        return result.schema

    def plan(
        self, epoch: int | None = None, *, request: ReadRequest | None = None, **fields: Any
    ) -> flight.FlightInfo:
        """Static mode: this consumer's share of an epoch (schema, row count, endpoints).

        Args:
            epoch: the epoch (None: the request's, else 0).
            request: the read to plan; ``epoch`` and ``fields`` override its fields.
            **fields: :class:`ReadRequest` fields (``rank``, ``world_size``, ``seed``, ...).

        Returns:
            The ``FlightInfo`` whose endpoints are the signed tickets in delivery order.

        Raises:
            TypeError: an unknown field.
            SpecError: an invalid request (e.g. ``rank >= world_size``, dynamic mode).
            AuthError, FeederError: as :meth:`status`.
        """
        read = ReadRequest.build(epoch, request, fields).for_job(self.job)
        return self._plan(read.static())

    def stream(
        self,
        epoch: int | None = None,
        *,
        request: ReadRequest | None = None,
        on_snapshot: Callable[[int], None] | None = None,
        **fields: Any,
    ) -> Iterator[pa.RecordBatch]:
        """Yield this consumer's batches of an epoch; see the module docstring.

        ``client.stream(0)``, ``client.stream(epoch, mode="dynamic", seed=1)`` and
        ``client.stream(request=ReadRequest(epoch=2, rank=1, world_size=2))`` all work.
        Static mode: rank ``rank`` of ``world_size`` gets its equal part, worker
        ``worker`` of ``num_workers`` its piece in whole ``unit``-row units, the first
        ``skip_rows`` rows left out (resume). Dynamic mode: every call is a consumer
        leasing units until the epoch is done (``drop_last`` and the split do not
        apply; ``skip_rows`` must be 0).

        Args:
            epoch: the epoch (None: the request's, else 0).
            request: the read; ``epoch`` and ``fields`` override its fields.
            on_snapshot: called with the snapshot id the epoch reads, as soon as the
                feeder says (a following feeder binds each epoch to one snapshot;
                ``-1``: a table without snapshots).
            **fields: :class:`ReadRequest` fields (``mode``, ``rank``, ``seed``, ...).

        Returns:
            An iterator of record batches; the feeder is first called when it is
            first advanced.

        Raises:
            TypeError: an unknown field (at the call).
            SpecError: an invalid request (at the call), or one the coordinator
                rejects, such as an unknown column (when first advanced).
            AuthError, FeederError: when advanced, as :meth:`status`, or when no
                data node can serve a range for ``retry_seconds``.
        """
        read = ReadRequest.build(epoch, request, fields).for_job(self.job)
        if read.mode is Mode.STATIC:
            return self._static(read.static(), on_snapshot)
        name = f"{os.uname().nodename}-{os.getpid()}-r{read.rank}w{read.worker}"
        lease = read.lease(f"{name}-{uuid.uuid4().hex[:8]}", self.host)
        return self._dynamic(lease, read.unit, on_snapshot)

    def _plan(self, request: StaticRequest) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_command(request.to_command())
        info: flight.FlightInfo = self._coordinator.call(
            "plan", lambda c, o: c.get_flight_info(descriptor, o)
        )
        return info

    def _resume(self, ticket: str, delivered: int) -> tuple[str, list[str]]:
        answer = self._coordinator.action("resume", {"ticket": ticket, "delivered": delivered})
        return answer["ticket"], list(answer["locations"])

    def _static(
        self, request: StaticRequest, on_snapshot: Callable[[int], None] | None = None
    ) -> Iterator[pa.RecordBatch]:
        info = self._plan(request)
        if on_snapshot is not None:
            answered = StaticRequest.from_command(bytes(info.descriptor.command or b""))
            if answered.snapshot_id is not None:  # an older coordinator names none
                on_snapshot(answered.snapshot_id)
        if is_mixed(info.endpoints):
            yield from read_static_windows(
                info.endpoints,
                seed=request.seed,
                epoch=request.epoch,
                nodes=self._nodes,
                unit=request.unit,
            )
            return
        ranges = [
            (e.ticket.ticket.decode("ascii"), [loc.uri.decode() for loc in e.locations])
            for e in info.endpoints
        ]
        unit = request.unit
        if self.read_ahead == 0 or len(ranges) < 2:
            position = 0
            for ticket, locations in ranges:
                for batch in self._nodes.read(ticket, locations, position=position, unit=unit):
                    position += batch.num_rows
                    yield batch
            return
        yield from read_ahead(
            ranges,
            lambda ticket, locations: self._nodes.read(ticket, locations, unit=unit),
            depth=self.read_ahead,
        )

    def _dynamic(
        self,
        request: LeaseRequest,
        unit: int,
        on_snapshot: Callable[[int], None] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        body = json.loads(request.to_body())
        beat = LeaseHeartbeater(self._coordinator.action, request, join_timeout=self.timeout)
        position = 0  # rows yielded, for the chunking hint
        scratch = WindowScratch()  # reused by every MIX window this stream leases
        try:
            while True:
                answer = self._coordinator.action("lease", body)
                if answer.get("unit") is None:
                    if answer.get("epoch_done"):
                        return
                    beat.wait(float(answer.get("retry_after", 0.5)))
                    continue
                lease_id = answer["lease"]
                if on_snapshot is not None and isinstance(answer.get("snapshot_id"), int):
                    on_snapshot(answer["snapshot_id"])
                    on_snapshot = None  # once: every lease of the epoch names the same
                beat.track(lease_id, float(answer.get("lease_seconds", 30.0)))
                completed = True
                batches = read_unit(
                    answer,
                    self._nodes,
                    seed=request.seed,
                    epoch=request.epoch,
                    position=position,
                    unit=unit,
                    scratch=scratch,
                )
                for batch in batches:
                    if beat.is_lost(lease_id):
                        completed = False
                        log.warning("lease %s expired mid-unit; moving on", lease_id)
                        break
                    position += batch.num_rows
                    # delivered = handed over: a consumer that holds rows while it stalls
                    # must not see them leased to another consumer as well
                    beat.delivered(lease_id, batch.num_rows)
                    yield batch
                if completed and not beat.is_lost(lease_id):
                    done = {"job": request.job, "epoch": request.epoch, "lease": lease_id}
                    self._coordinator.action("done", {**done, "consumer": request.consumer})
                beat.untrack(lease_id)
        finally:
            beat.stop()
