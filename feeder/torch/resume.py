"""Versioned resume state of one FeederDataset iterator (one rank, one DataLoader worker).

The state is a small plain dict, safe to put in a checkpoint next to the model
(``torch.save``, JSON): it names *where* a consumer stopped, never *what* it read.

Version 3 fields (a version 1 or 2 state is read as version 3 with the fields
it lacks null):

==================  =============================================================
``version``         ``3``
``job``             feeder job name
``epoch``           epoch being read
``rows_consumed``   rows of this worker's share already yielded in ``epoch``
``seed``            shuffle seed
``shuffle``         the epoch order: ``"off"``, ``"slice"`` or ``"mix"`` (states
                    written before MIX hold a bool: true was ``"slice"``)
``world_size``      number of ranks (static mode)
``rank``            this consumer's rank
``num_workers``     DataLoader workers of the rank (1 without workers)
``worker``          this worker's id (0 without workers)
``batch_size``      rows per batch
``drop_last``       whether the rank's last rows / last partial batch are dropped
``mode``            ``"static"`` or ``"dynamic"``
``delivered``       (v2) null, or rows yielded by each DataLoader worker of the rank
                    (``num_workers`` entries): a *rank state* made by
                    :func:`merge_worker_states` from the workers' states
``resume_from``     (v2) null, or the elastic origin this iteration was cut from:
                    ``{"world_size", "num_workers", "unit", "drop_last",
                    "delivered"}`` (PROTOCOL.md, ``resume_from``)
==================  =============================================================

Decision: a static-mode share depends on (epoch, seed, shuffle, world_size, rank,
num_workers, worker, batch_size, drop_last). Mid-epoch, ``seed``, ``shuffle``,
``batch_size`` and ``drop_last`` must match. The same shape (world size, rank,
workers, worker) resumes by skipping ``rows_consumed``. Another shape resumes
*elastically*: in DDP all ranks step in lockstep, so the rows each worker of one
rank yielded say what every rank delivered; the coordinator serves the rest of the
epoch cut for the new shape (:mod:`feeder.protocol.elastic`). That needs the
counts of *all* the rank's workers: a state without DataLoader workers has them,
a worker's state does not (merge the rank's worker states first). An elastic
resume of an iteration that was itself resumed elastically is refused mid-epoch
(finish the epoch at the shape it runs at, or resume it at that shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from feeder.protocol.elastic import Progress
from feeder.protocol.modes import Mode
from jobs.errors import SpecError

STATE_VERSION = 3

#: Versions :meth:`ResumeState.from_dict` reads (a v1 state has no ``delivered``/``resume_from``,
#: a v2 state no ``snapshot_id``).
READABLE_VERSIONS = (1, 2, 3)


#: Fields that must match between a saved state and the dataset resuming it mid-epoch.
ORDER_FIELDS = ("job", "seed", "shuffle", "batch_size", "drop_last", "mode")

#: Fields that, all equal, make a mid-epoch resume a plain skip of ``rows_consumed``.
SHAPE_FIELDS = ("world_size", "rank", "num_workers", "worker")


@dataclass(frozen=True, kw_only=True)
class ResumeState:
    """Where one worker of one rank stopped; see the module docstring for the fields."""

    job: str
    epoch: int
    rows_consumed: int
    seed: int
    shuffle: str
    world_size: int
    rank: int
    num_workers: int
    worker: int
    batch_size: int
    drop_last: bool
    mode: Mode
    delivered: tuple[int, ...] | None = None
    resume_from: Progress | None = None
    snapshot_id: int | None = None
    version: int = STATE_VERSION

    def __post_init__(self) -> None:
        if self.version != STATE_VERSION:  # from_dict reads older versions
            raise SpecError(
                f"resume state version {self.version!r} is not supported (expected "
                f"{STATE_VERSION}); it was written by another icefeed release"
            )
        if not isinstance(self.mode, Mode):
            try:
                object.__setattr__(self, "mode", Mode(self.mode))
            except ValueError:
                raise SpecError(
                    f"resume state mode: {self.mode!r} is not one of 'static', 'dynamic'"
                ) from None
        if not isinstance(self.job, str) or not self.job:
            raise SpecError(f"resume state job: {self.job!r} must be a non-empty string")
        if isinstance(self.shuffle, bool):  # a state written before MIX existed
            object.__setattr__(self, "shuffle", "slice" if self.shuffle else "off")
        if self.shuffle not in ("off", "slice", "mix"):
            raise SpecError(
                f"resume state shuffle: {self.shuffle!r} is not one of 'off', 'slice', 'mix'"
            )
        if not isinstance(self.drop_last, bool):
            raise SpecError(f"resume state drop_last: {self.drop_last!r} is not a bool")
        minimum = {
            "epoch": 0,
            "rows_consumed": 0,
            "seed": 0,
            "world_size": 1,
            "rank": 0,
            "num_workers": 1,
            "worker": 0,
            "batch_size": 1,
        }
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpecError(f"resume state {name}: {value!r} must be an integer >= {low}")
        if self.rank >= self.world_size:
            raise SpecError(f"resume state rank {self.rank} must be < world_size {self.world_size}")
        if self.worker >= self.num_workers:
            raise SpecError(
                f"resume state worker {self.worker} must be < num_workers {self.num_workers}"
            )
        if self.delivered is not None:
            # validated as an elastic origin: one count per worker of the rank
            object.__setattr__(self, "delivered", self.progress().delivered)
        if isinstance(self.resume_from, Mapping):
            object.__setattr__(self, "resume_from", _progress(self.resume_from))
        if self.resume_from is not None and not isinstance(self.resume_from, Progress):
            raise SpecError(f"resume state resume_from: {self.resume_from!r} is not an object")
        sid = self.snapshot_id
        if sid is not None and (isinstance(sid, bool) or not isinstance(sid, int)):
            raise SpecError(f"resume state snapshot_id: {sid!r} must be an integer or null")

    def to_dict(self) -> dict[str, Any]:
        """Return the plain, JSON-serialisable dict form."""
        out = asdict(self)
        out["mode"] = self.mode.value
        out["delivered"] = list(self.delivered) if self.delivered is not None else None
        if self.resume_from is not None:
            out["resume_from"] = {**asdict(self.resume_from)}
            out["resume_from"]["delivered"] = list(self.resume_from.delivered)
        return out

    def progress(self) -> Progress:
        """Return this rank state's progress as an elastic origin.

        Raises:
            SpecError: a DataLoader worker's state (it lacks its siblings' counts).
        """
        delivered = self.delivered
        if delivered is None:
            if self.num_workers != 1:
                raise SpecError(
                    f"cannot resume mid-epoch at another shape from the state of DataLoader "
                    f"worker {self.worker} alone: merge the states of all {self.num_workers} "
                    "workers of the rank with feeder.torch.resume.merge_worker_states (or pass "
                    "them all to load_state_dict), or resume with the same world size and "
                    "num_workers"
                )
            delivered = (self.rows_consumed,)
        return Progress(
            world_size=self.world_size,
            num_workers=self.num_workers,
            unit=self.batch_size,
            drop_last=self.drop_last,
            delivered=tuple(delivered),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeState:
        """Parse a dict written by :meth:`to_dict`; raises SpecError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise SpecError(f"resume state must be a dict, not {type(data).__name__}")
        if "version" not in data:
            raise SpecError("resume state has no 'version' field; it is not an icefeed state")
        if data["version"] not in READABLE_VERSIONS:
            raise SpecError(
                f"resume state version {data['version']!r} is not supported (expected one of "
                f"{list(READABLE_VERSIONS)})"
            )
        data = {
            "delivered": None,
            "resume_from": None,
            "snapshot_id": None,
            **data,
            "version": STATE_VERSION,
        }
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data) - {"version"})
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise SpecError(f"resume state: missing fields {missing}, unknown fields {unknown}")
        return cls(**dict(data))

    def check_compatible(self, current: ResumeState) -> None:
        """Raise SpecError if this saved state cannot resume in ``current``'s shape.

        At an epoch boundary (``rows_consumed == 0``) only ``job`` and ``mode`` must
        match; mid-epoch see :meth:`resume_plan`.
        """
        self.resume_plan(current)

    def resume_plan(self, current: ResumeState) -> tuple[int, Progress | None]:
        """Return how ``current`` resumes this state: (rows to skip, elastic origin).

        ``(rows_consumed, resume_from)`` for the same shape, ``(0, progress)`` for an
        elastic resume at another shape, ``(0, None)`` at an epoch boundary.

        Raises:
            SpecError: a field of :data:`ORDER_FIELDS` differs mid-epoch, or another
                shape cannot resume elastically (dynamic mode, a lone worker's state,
                an iteration that was itself resumed elastically).
        """
        boundary = self.rows_consumed == 0 and not any(self.delivered or ())
        for name in ("job", "mode") if boundary else ORDER_FIELDS:
            saved, now = getattr(self, name), getattr(current, name)
            if saved != now:
                raise SpecError(
                    f"cannot resume mid-epoch: {name} was {saved!r} when the state was saved "
                    f"but is {now!r} now; resume with the same {name}, or restart at an "
                    "epoch boundary"
                )
        if boundary:
            return 0, None
        same = all(getattr(self, n) == getattr(current, n) for n in SHAPE_FIELDS)
        if same and self.delivered is None:
            return self.rows_consumed, self.resume_from
        if self.mode is not Mode.STATIC:
            raise SpecError(
                "cannot resume mid-epoch at another shape in dynamic mode: world_size was "
                f"{self.world_size}, num_workers {self.num_workers}; restart at an epoch boundary"
            )
        if self.resume_from is not None:
            raise SpecError(
                "cannot resume mid-epoch at another shape: this state was saved by an "
                f"iteration that was itself resumed elastically (world_size was "
                f"{self.world_size}, num_workers {self.num_workers}); resume it with that "
                "world size and num_workers, or restart at an epoch boundary"
            )
        return 0, self.progress()


def _progress(data: Mapping[str, Any]) -> Progress:
    names = {"world_size", "num_workers", "unit", "drop_last", "delivered"}
    if set(data) != names:
        raise SpecError(
            f"resume state resume_from: {dict(data)!r} must have exactly {sorted(names)}"
        )
    return Progress(**dict(data))


def merge_worker_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the states of all DataLoader workers of one rank into one rank state.

    The result resumes at any world size and worker count (elastic resume): its
    ``delivered`` holds each worker's ``rows_consumed``.

    Args:
        states: one state per worker ``0..num_workers-1`` of the same rank, in any order.

    Returns:
        A state dict (``worker`` 0, ``rows_consumed`` the rank's total, ``delivered``).

    Raises:
        SpecError: the states are not exactly the workers of one rank's iteration.
    """
    parsed = [ResumeState.from_dict(s) for s in states]
    if not parsed:
        raise SpecError("merge_worker_states: no states given")
    first = parsed[0]
    same = (*ORDER_FIELDS, "epoch", "world_size", "rank", "num_workers", "resume_from")
    for other in parsed[1:]:
        for name in same:
            if getattr(other, name) != getattr(first, name):
                raise SpecError(
                    f"merge_worker_states: {name} differs between worker states "
                    f"({getattr(first, name)!r} vs {getattr(other, name)!r}); merge the "
                    "workers of one rank's iteration"
                )
    workers = sorted(s.worker for s in parsed)
    if workers != list(range(first.num_workers)):
        raise SpecError(
            f"merge_worker_states: got workers {workers}, need each of 0..{first.num_workers - 1} "
            "exactly once"
        )
    if any(s.delivered is not None for s in parsed):
        raise SpecError("merge_worker_states: a state is already a merged rank state")
    counts = [s.rows_consumed for s in sorted(parsed, key=lambda s: s.worker)]
    merged = replace(first, worker=0, rows_consumed=sum(counts), delivered=tuple(counts))
    return merged.to_dict()
