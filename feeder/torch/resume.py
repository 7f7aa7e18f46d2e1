"""Versioned resume state of one FeederDataset iterator (one rank, one DataLoader worker).

The state is a small plain dict, safe to put in a checkpoint next to the model
(``torch.save``, JSON): it names *where* a consumer stopped, never *what* it read.

Version 1 fields:

==================  =============================================================
``version``         always ``1``
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
==================  =============================================================

Decision: a static-mode share depends on (epoch, seed, shuffle, world_size, rank,
num_workers, worker, batch_size, drop_last), so resuming with any of those changed
would skip the wrong rows. :meth:`ResumeState.check_compatible` refuses it with a
:class:`~jobs.errors.SpecError` that names the field; to change the world size,
resume at an epoch boundary (``rows_consumed == 0``), which is always allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from feeder.protocol.modes import Mode
from jobs.errors import SpecError

STATE_VERSION = 1


#: Fields that must match between a saved state and the dataset resuming it mid-epoch.
SHAPE_FIELDS = (
    "job",
    "seed",
    "shuffle",
    "world_size",
    "rank",
    "num_workers",
    "worker",
    "batch_size",
    "drop_last",
    "mode",
)


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
    version: int = STATE_VERSION

    def __post_init__(self) -> None:
        if self.version != STATE_VERSION:
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

    def to_dict(self) -> dict[str, Any]:
        """Return the plain, JSON-serialisable dict form."""
        out = asdict(self)
        out["mode"] = self.mode.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeState:
        """Parse a dict written by :meth:`to_dict`; raises SpecError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise SpecError(f"resume state must be a dict, not {type(data).__name__}")
        if "version" not in data:
            raise SpecError("resume state has no 'version' field; it is not an icefeed state")
        if data["version"] != STATE_VERSION:
            raise SpecError(
                f"resume state version {data['version']!r} is not supported (expected "
                f"{STATE_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data) - {"version"})
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise SpecError(f"resume state: missing fields {missing}, unknown fields {unknown}")
        return cls(**dict(data))

    def check_compatible(self, current: ResumeState) -> None:
        """Raise SpecError if this saved state cannot resume in ``current``'s shape.

        At an epoch boundary (``rows_consumed == 0``) only ``job`` and ``mode`` must
        match; mid-epoch every field of :data:`SHAPE_FIELDS` must.
        """
        checked = SHAPE_FIELDS if self.rows_consumed else ("job", "mode")
        for name in checked:
            saved, now = getattr(self, name), getattr(current, name)
            if saved != now:
                raise SpecError(
                    f"cannot resume mid-epoch: {name} was {saved!r} when the state was saved "
                    f"but is {now!r} now; resume with the same {name}, or restart at an "
                    "epoch boundary"
                )
