"""Bounds on what the coordinator remembers: jobs, epochs, metric labels, stalled leases.

One :class:`CoordinatorLimits`, validated at construction. Every bound is
documented (with its default) in docs/feeder.md, *Limits*, and on the wire in
PROTOCOL.md, *Limits*.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from jobs.errors import SpecError

DEFAULT_MAX_JOBS = 64
DEFAULT_EPOCHS_KEPT = 4
DEFAULT_MAX_OPEN_EPOCHS = 8
DEFAULT_IDLE_SECONDS = 3600.0
DEFAULT_STALL_LEASES = 3.0
DEFAULT_METRIC_JOBS = 32
DEFAULT_CONSUMERS_KEPT = 1024
RETIRED_EPOCHS_KEPT = 256  # evicted epochs of a job still answered as such (then forgotten)


@dataclass(frozen=True, kw_only=True)
class CoordinatorLimits:
    """How much per-job state one coordinator keeps.

    Args:
        max_jobs: live jobs at once; a new job beyond it is refused (a job is
            live while it has an unfinished epoch or was seen within ``idle_seconds``).
        epochs_kept: finished dynamic epochs kept per job (older ones are dropped).
        max_open_epochs: unfinished dynamic epochs per job at once; a new one beyond
            it is refused.
        idle_seconds: a dynamic epoch nobody called for this long is dropped, and a
            job without epochs seen this long ago is forgotten.
        stall_leases: k; a lease whose delivered rows did not move for
            ``k × lease_seconds`` expires even while heartbeats keep coming.
        metric_jobs: distinct job labels on the Prometheus metrics; later jobs
            are counted under ``job="other"``.
        consumers_kept: distinct consumer names remembered per job (status counts).

    Raises:
        SpecError: a bad value, naming the field.
    """

    max_jobs: int = DEFAULT_MAX_JOBS
    epochs_kept: int = DEFAULT_EPOCHS_KEPT
    max_open_epochs: int = DEFAULT_MAX_OPEN_EPOCHS
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    stall_leases: float = DEFAULT_STALL_LEASES
    metric_jobs: int = DEFAULT_METRIC_JOBS
    consumers_kept: int = DEFAULT_CONSUMERS_KEPT

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SpecError(f"{f.name}: {value!r} must be a positive number")
            if f.type in ("int", int) and not isinstance(value, int):
                raise SpecError(f"{f.name}: {value!r} must be a positive integer")
        if self.stall_leases < 1:
            raise SpecError(f"stall_leases: {self.stall_leases!r} must be >= 1")
