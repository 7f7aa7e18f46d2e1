"""Consumer requests to the coordinator: built by the client, parsed strictly by the coordinator.

Pure: JSON in, frozen dataclasses out. Every parse error is a SpecError whose
message names the field; the coordinator turns it into an invalid-argument
Flight error. Wire forms are documented in PROTOCOL.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from feeder.protocol.elastic import Progress
from feeder.protocol.hosts import check_host
from feeder.protocol.mix import DEFAULT_BLOCK_ROWS, DEFAULT_WINDOW_ROWS, MixParams
from feeder.protocol.shuffle_kind import DEFAULT_SHUFFLE, Shuffle, parse_shuffle
from jobs.errors import SpecError

VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024
_U32 = 2**32 - 1
_MAX_SEED = 2**64
_MAX_COUNT = 2**31
#: A job name: 1 to 128 characters, letters, digits and ``. _ - : / @ + =``, not
#: starting with punctuation (it is a log field, a metrics label and a header value).
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,127}")


def _int(data: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise SpecError(f"{key}: {value!r} must be an integer in [{lo}, {hi})")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{key}: {value!r} must be true or false")
    return value


def _name(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise SpecError(f"{key}: {value!r} must be a non-empty string of at most 256 characters")
    return value


def _job(data: Mapping[str, Any], key: str = "job", default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not JOB_NAME.fullmatch(value):
        raise SpecError(
            f"{key}: {str(value)[:64]!r} is not a job name: 1 to 128 letters, digits or "
            "'._-:/@+=', starting with a letter or digit"
        )
    return value


def _columns(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = data.get("columns")
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(c, str) and c for c in value)
    ):
        raise SpecError(f"columns: {value!r} must be null or a non-empty list of column names")
    if len(set(value)) != len(value):
        raise SpecError(f"columns: duplicate names in {list(value)}")
    return tuple(value)


def _snapshot(data: Mapping[str, Any], key: str = "snapshot_id") -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise SpecError(f"{key}: {value!r} must be a snapshot id (an integer) or null")
    return value


def parse_json(raw: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object body; raises SpecError for anything else."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise SpecError(f"{what}: body larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"{what}: body is not JSON") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{what}: body must be a JSON object")
    return data


def _mix(data: Mapping[str, Any]) -> MixParams:
    block = _int(data, "block_rows", 1, 2**31, DEFAULT_BLOCK_ROWS)
    window = _int(data, "window_rows", 1, 2**31, DEFAULT_WINDOW_ROWS)
    try:
        return MixParams(block_rows=block, window_rows=window)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _progress(value: Any) -> Progress | None:
    """Parse the optional ``resume_from`` object of a static request."""
    if value is None:
        return None
    names = {"world_size", "num_workers", "unit", "drop_last", "delivered"}
    if not isinstance(value, dict) or set(value) != names:
        raise SpecError(
            f"resume_from: {value!r} must be null or an object with exactly {sorted(names)}"
        )
    return Progress(**value)


@dataclass(frozen=True, kw_only=True)
class EpochParams:
    """What fixes a job's epoch order: seed, shuffle (and MIX's knobs) and projection.

    ``shuffle`` accepts what :func:`feeder.protocol.shuffle_kind.parse_shuffle` does
    (``True`` is MIX) and holds a :class:`Shuffle`.
    """

    job: str = "default"
    epoch: int = 0
    seed: int = 0
    shuffle: Shuffle = DEFAULT_SHUFFLE
    columns: tuple[str, ...] | None = None
    mix: MixParams = field(default_factory=MixParams)
    #: the snapshot the consumer asks for (pinned, or its resume state's); None: the feeder's
    snapshot_id: int | None = None

    def __post_init__(self) -> None:
        _snapshot({"snapshot_id": self.snapshot_id})
        _job({"job": self.job})
        _int({"epoch": self.epoch}, "epoch", 0, _U32)
        _int({"seed": self.seed}, "seed", 0, _MAX_SEED)
        object.__setattr__(self, "shuffle", parse_shuffle(self.shuffle))
        if not isinstance(self.mix, MixParams):
            raise SpecError(f"mix: {self.mix!r} must be a MixParams")
        _columns({"columns": self.columns})

    def _order_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shuffle": self.shuffle.value}
        if self.shuffle is Shuffle.MIX:
            out.update(block_rows=self.mix.block_rows, window_rows=self.mix.window_rows)
        if self.snapshot_id is not None:  # only then: older coordinators parse the rest
            out["snapshot_id"] = self.snapshot_id
        return out


@dataclass(frozen=True, kw_only=True)
class StaticRequest(EpochParams):
    """One consumer's share of an epoch in static mode (``get_flight_info`` command).

    Rank ``rank`` of ``world_size`` gets its equal part; DataLoader worker
    ``worker`` of ``num_workers`` gets its contiguous piece of that part in whole
    ``unit``-row units; the first ``skip_rows`` rows of the piece are left out
    (resume). With ``resume_from`` (elastic resume) the epoch is first reduced to
    the rows that shape had not delivered, and that remainder is what is cut.
    ``locality`` (MIX only; every rank of a job must agree, as on the seed): the
    epoch order is built per placement group of slices (PROTOCOL.md, *Locality*),
    so a rank's part comes from one data node's slices where the shape allows.
    Raises SpecError for any invalid field, e.g. ``rank >= world_size``.
    """

    rank: int = 0
    world_size: int = 1
    drop_last: bool = True
    worker: int = 0
    num_workers: int = 1
    unit: int = 1
    skip_rows: int = 0
    resume_from: Progress | None = None
    locality: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _bool({"locality": self.locality}, "locality", False)
        if self.locality and self.shuffle is not Shuffle.MIX:
            raise SpecError(
                f"locality: static mode places ranks by data node with the mix shuffle "
                f"only, not {self.shuffle.value!r}"
            )
        if self.resume_from is not None and not isinstance(self.resume_from, Progress):
            raise SpecError(f"resume_from: {self.resume_from!r} must be a Progress or None")
        world = _int({"world_size": self.world_size}, "world_size", 1, _MAX_COUNT)
        if not isinstance(self.rank, int) or isinstance(self.rank, bool):
            raise SpecError(f"rank: {self.rank!r} must be an integer")
        if not 0 <= self.rank < world:
            raise SpecError(f"rank: {self.rank} must be in [0, world_size={world})")
        workers = _int({"num_workers": self.num_workers}, "num_workers", 1, _MAX_COUNT)
        if not isinstance(self.worker, int) or not 0 <= self.worker < workers:
            raise SpecError(f"worker: {self.worker!r} must be in [0, num_workers={workers})")
        _int({"unit": self.unit}, "unit", 1, _MAX_COUNT)
        _int({"skip_rows": self.skip_rows}, "skip_rows", 0, 2**62)
        _bool({"drop_last": self.drop_last}, "drop_last", True)

    def to_command(self) -> bytes:
        """The ``FlightDescriptor.for_command`` payload."""
        body: dict[str, Any] = {
            "v": VERSION,
            "job": self.job,
            "epoch": self.epoch,
            "seed": self.seed,
            **self._order_fields(),
            "columns": list(self.columns) if self.columns is not None else None,
            "rank": self.rank,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
            "worker": self.worker,
            "num_workers": self.num_workers,
            "unit": self.unit,
            "skip_rows": self.skip_rows,
        }
        if self.locality:  # only then: older coordinators parse the rest
            body["locality"] = True
        if self.resume_from is not None:  # only then: older coordinators parse the rest
            progress = self.resume_from
            body["resume_from"] = {
                "world_size": progress.world_size,
                "num_workers": progress.num_workers,
                "unit": progress.unit,
                "drop_last": progress.drop_last,
                "delivered": list(progress.delivered),
            }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_command(cls, raw: bytes) -> StaticRequest:
        """Parse a ``get_flight_info`` command; raises SpecError naming the bad field."""
        data = parse_json(raw, "command")
        known = {
            "v",
            "job",
            "epoch",
            "seed",
            "shuffle",
            "block_rows",
            "window_rows",
            "columns",
            "rank",
            "world_size",
            "drop_last",
            "worker",
            "num_workers",
            "unit",
            "skip_rows",
            "resume_from",
            "snapshot_id",
            "locality",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"command: unknown field(s) {unknown}")
        if data.get("v", VERSION) != VERSION:
            raise SpecError(f"command: version {data.get('v')!r} is not {VERSION}")
        return cls(
            job=_job(data, "job", "default"),
            epoch=_int(data, "epoch", 0, _U32, 0),
            seed=_int(data, "seed", 0, _MAX_SEED, 0),
            shuffle=parse_shuffle(data.get("shuffle", True)),
            columns=_columns(data),
            mix=_mix(data),
            rank=_int(data, "rank", 0, _MAX_COUNT, 0),
            world_size=_int(data, "world_size", 1, _MAX_COUNT, 1),
            drop_last=_bool(data, "drop_last", True),
            worker=_int(data, "worker", 0, _MAX_COUNT, 0),
            num_workers=_int(data, "num_workers", 1, _MAX_COUNT, 1),
            unit=_int(data, "unit", 1, _MAX_COUNT, 1),
            skip_rows=_int(data, "skip_rows", 0, 2**62, 0),
            resume_from=_progress(data.get("resume_from")),
            snapshot_id=_snapshot(data),
            locality=_bool(data, "locality", False),
        )


@dataclass(frozen=True, kw_only=True)
class LeaseRequest(EpochParams):
    """A dynamic-mode ``lease`` call of consumer ``consumer`` on host ``host`` (None: not
    said; the coordinator then leases without locality). Raises SpecError for a bad host."""

    consumer: str
    host: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.host is not None:
            check_host(self.host)

    def to_body(self) -> bytes:
        """The ``lease`` action body (``host`` only when set)."""
        body: dict[str, Any] = {
            "job": self.job,
            "epoch": self.epoch,
            "seed": self.seed,
            **self._order_fields(),
            "columns": list(self.columns) if self.columns is not None else None,
            "consumer": self.consumer,
        }
        if self.host is not None:
            body["host"] = self.host
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_body(cls, raw: bytes) -> LeaseRequest:
        """Parse a ``lease`` body; raises SpecError naming the bad field."""
        data = parse_json(raw, "lease")
        return cls(
            job=_job(data, "job", "default"),
            epoch=_int(data, "epoch", 0, _U32, 0),
            seed=_int(data, "seed", 0, _MAX_SEED, 0),
            shuffle=parse_shuffle(data.get("shuffle", True)),
            columns=_columns(data),
            mix=_mix(data),
            consumer=_name(data, "consumer"),
            snapshot_id=_snapshot(data),
            host=None if data.get("host") is None else check_host(data["host"]),
        )


def field_int(data: Mapping[str, Any], key: str, lo: int = 0, hi: int = 2**62) -> int:
    """Read an integer field of an action body; raises SpecError naming it."""
    return _int(data, key, lo, hi)


def field_job(data: Mapping[str, Any], key: str = "job") -> str:
    """Read a job name field of an action body; raises SpecError naming it."""
    return _job(data, key)


def field_name(data: Mapping[str, Any], key: str) -> str:
    """Read a non-empty string field of an action body; raises SpecError naming it."""
    return _name(data, key)
