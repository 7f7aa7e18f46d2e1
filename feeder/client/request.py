"""``ReadRequest``: what one consumer asks of an epoch, for ``FeederClient.stream`` and ``plan``.

A :class:`~feeder.protocol.messages.StaticRequest` (the static-mode wire message,
whose validation it reuses) plus the ``mode``. In dynamic mode the split fields
(``rank``, ``world_size``, ``worker``, ``num_workers``, ``drop_last``) only name
the consumer, and ``skip_rows`` must be 0 (the coordinator's leases track progress).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feeder.protocol.chunking import MAX_UNIT
from feeder.protocol.messages import EpochParams, LeaseRequest, StaticRequest
from feeder.protocol.modes import Mode
from jobs.errors import SpecError

_STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(StaticRequest))


def column_names(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    """Return ``columns`` as a tuple (None stays None).

    Raises:
        SpecError: ``columns`` is one string rather than a list of names.
    """
    if columns is None:
        return None
    if isinstance(columns, str):
        raise SpecError("columns: give a list of column names, not one string")
    return tuple(columns)


@dataclass(frozen=True, kw_only=True)
class ReadRequest(StaticRequest):
    """One consumer's read of an epoch: the static-mode request fields plus ``mode``.

    Fields (all keyword-only, validated at construction):
        epoch, seed, shuffle, columns: what fixes the epoch's order and projection.
        snapshot_id: the snapshot to read (a job that pins one, or resumes an epoch);
            None: the one the feeder serves new epochs (a following feeder's newest).
        mode: ``Mode.STATIC`` (or ``"static"``, DDP: fixed equal shares) or
            ``Mode.DYNAMIC`` (``"dynamic"``: lease units until the epoch is done).
        rank, world_size, drop_last: this rank's equal part of the epoch (static mode).
        worker, num_workers: this DataLoader worker's piece of the rank's part.
        unit: the consumer's batch size: workers' pieces are whole units, and nodes
            cut their record batches on this grid.
        skip_rows: rows of the piece left out (resume; static mode only).
        locality: static mode, MIX: the epoch order per data node's slices
            (docs/feeder.md, *Locality*).
        job: leave at its default; the client fills in its own job.

    Raises:
        SpecError: a field is invalid; the message names it (e.g. ``rank``).
    """

    mode: Mode = Mode.STATIC

    def __post_init__(self) -> None:
        mode: Any = self.mode
        try:
            object.__setattr__(self, "mode", Mode(mode.value if isinstance(mode, Mode) else mode))
        except ValueError:
            raise SpecError(f"mode: {mode!r} is not one of static, dynamic") from None
        object.__setattr__(self, "columns", column_names(self.columns))
        if self.mode is Mode.STATIC:
            super().__post_init__()
            return
        EpochParams.__post_init__(self)
        if self.skip_rows:
            raise SpecError("skip_rows: dynamic mode cannot skip rows (leases track progress)")
        if self.resume_from is not None:
            raise SpecError("resume_from: elastic resume is for static mode only")
        if self.locality:
            raise SpecError(
                "locality: a static-mode option; in dynamic mode the feeder's own locality "
                "option builds windows per host (docs/feeder.md, Locality)"
            )
        unit = self.unit
        if isinstance(unit, bool) or not isinstance(unit, int) or not 1 <= unit <= MAX_UNIT:
            raise SpecError(f"unit: {unit!r} must be an integer in [1, {MAX_UNIT}]")

    @classmethod
    def build(
        cls, epoch: int | None, request: ReadRequest | None, fields: Mapping[str, Any]
    ) -> ReadRequest:
        """Return ``request`` (or a default one) with ``epoch`` and ``fields`` set.

        Args:
            epoch: the epoch, or None to keep the request's (0 without a request).
            request: a request to start from, or None.
            fields: further fields to set, by name.

        Returns:
            The validated request.

        Raises:
            TypeError: ``fields`` names something that is not a request field.
            SpecError: a field is invalid.
        """
        known = {f.name for f in dataclasses.fields(cls)} - {"job"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise TypeError(f"unknown read request field(s) {unknown}; known: {sorted(known)}")
        changes = dict(fields)
        if epoch is not None:
            changes["epoch"] = epoch
        if request is None:
            return cls(**changes)
        if not isinstance(request, ReadRequest):
            raise TypeError(f"request: expected a ReadRequest, got {type(request).__name__}")
        return dataclasses.replace(request, **changes) if changes else request

    def for_job(self, job: str) -> ReadRequest:
        """Return this request for ``job`` (the client's job).

        Raises:
            SpecError: the request names another job than ``job``.
        """
        if self.job == job:
            return self
        if self.job != "default":
            raise SpecError(f"job: the request's {self.job!r} is not the client's job {job!r}")
        return dataclasses.replace(self, job=job)

    def static(self) -> StaticRequest:
        """Return the static-mode wire request (``get_flight_info`` command).

        Raises:
            SpecError: this is a dynamic-mode request.
        """
        if self.mode is not Mode.STATIC:
            raise SpecError("mode: a plan exists in static mode only (dynamic mode leases units)")
        return StaticRequest(**{name: getattr(self, name) for name in _STATIC_FIELDS})

    def lease(self, consumer: str, host: str | None = None) -> LeaseRequest:
        """Return the dynamic-mode ``lease`` request of consumer ``consumer`` on ``host``."""
        return LeaseRequest(
            job=self.job,
            epoch=self.epoch,
            seed=self.seed,
            shuffle=self.shuffle,
            columns=self.columns,
            mix=self.mix,
            consumer=consumer,
            snapshot_id=self.snapshot_id,
            host=host,
        )
