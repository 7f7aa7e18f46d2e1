"""Messages between a data node and its coordinator: the node-only actions and their answers.

The data node builds the requests (``register``, ``cached``, ``node_heartbeat``)
and parses the answers; the coordinator parses the requests and builds the
answers. Pure: frozen dataclasses, validated at construction, so a malformed
message fails on whichever side reads it with a SpecError naming the field (the
coordinator turns it into an invalid-argument Flight error and keeps serving).
Unknown fields are ignored, so either side may add optional ones. Wire forms:
PROTOCOL.md, *Coordinator actions*.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from feeder.protocol.hosts import check_host
from feeder.protocol.messages import parse_json
from feeder.protocol.slice_plan import SlicePlan
from feeder.protocol.storage import public_io_properties
from jobs.errors import FeederError, SpecError

_MAX_COUNT = 2**62
_MAX_NAME = 256
#: job names one ``node_heartbeat`` may carry (jobs read from the node since its last one)
MAX_JOBS_READ = 1024

_M = TypeVar("_M", bound="NodeMessage")


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise SpecError(
            f"{what}: {value!r} must be a non-empty string of at most {_MAX_NAME} characters"
        )
    return value


def _text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{what}: must be a non-empty string")
    return value


def _count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_COUNT:
        raise SpecError(f"{what}: {value!r} must be an integer in [0, {_MAX_COUNT})")
    return value


def _optional_count(what: str, value: object) -> int | None:
    return None if value is None else _count(what, value)


def _optional_text(what: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{what}: {value!r} must be a string or null")
    return value


def _counts(what: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise SpecError(f"{what}: must be a list of slice ids")
    return tuple(_count(f"{what}[{i}]", v) for i, v in enumerate(value))


def _str_map(what: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"{what}: must be a JSON object of strings")
    return dict(value)


class NodeMessage:
    """What every node message does: JSON bytes out (``to_json``), JSON bytes in (``from_json``)."""

    WHAT: ClassVar[str]  # how parse errors name the message

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Parse the wire form; raises SpecError naming the bad field."""
        raise NotImplementedError

    def to_json(self) -> bytes:
        """Return the wire form as compact JSON bytes."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls: type[_M], raw: bytes) -> _M:
        """Parse JSON bytes; raises SpecError if they are not this message."""
        return cls.from_dict(parse_json(raw, cls.WHAT))


class NodeRequest(NodeMessage):
    """A node-only action's request: ``ACTION`` is its name in the protocol's action table."""

    ACTION: ClassVar[str]


@dataclass(frozen=True, kw_only=True)
class RegisterRequest(NodeRequest):
    """``register``: a data node joins the feeder at ``location``.

    ``slot=None`` lets the coordinator pick the lowest slot without a live node.
    ``pid``, ``cache_dir`` and ``capacity_bytes`` are informational (status
    document, logs). ``local_socket`` is the node's local read socket (None: no local
    reads), listed in the status document for consumers on its host. ``host`` is the
    host it runs on (locality; None from a node that predates it). Raises SpecError
    for an invalid field.
    """

    ACTION: ClassVar[str] = "register"
    WHAT: ClassVar[str] = ACTION

    node_id: str
    location: str
    pid: int | None = None
    cache_dir: str | None = None
    capacity_bytes: int | None = None
    slot: int | None = None
    local_socket: str | None = None
    host: str | None = None

    def __post_init__(self) -> None:
        _name("node_id", self.node_id)
        _name("location", self.location)
        if self.host is not None:
            check_host(self.host)
        _optional_count("pid", self.pid)
        _optional_text("cache_dir", self.cache_dir)
        _optional_text("local_socket", self.local_socket)
        _optional_count("capacity_bytes", self.capacity_bytes)
        _optional_count("slot", self.slot)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form (``slot`` only when set)."""
        data: dict[str, Any] = {
            "node_id": self.node_id,
            "location": self.location,
            "pid": self.pid,
            "cache_dir": self.cache_dir,
            "capacity_bytes": self.capacity_bytes,
        }
        if self.slot is not None:
            data["slot"] = self.slot
        if self.local_socket is not None:
            data["local_socket"] = self.local_socket
        if self.host is not None:
            data["host"] = self.host
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegisterRequest:
        """Parse the wire form; raises SpecError naming the bad field."""
        return cls(
            node_id=_name("node_id", data.get("node_id")),
            location=_name("location", data.get("location")),
            pid=data.get("pid"),
            cache_dir=data.get("cache_dir"),
            capacity_bytes=data.get("capacity_bytes"),
            slot=data.get("slot"),
            local_socket=data.get("local_socket"),
            host=data.get("host"),
        )


def _snapshot_id(what: str, value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{what}: {value!r} must be an integer or null")
    return value


def _plans(what: str, value: object) -> tuple[SlicePlan, ...]:
    if not isinstance(value, list):
        raise SpecError(f"{what}: must be a list of slice plans")
    plans = []
    for i, raw in enumerate(value):
        try:
            plans.append(SlicePlan.from_dict(raw))
        except FeederError as exc:
            raise SpecError(f"{what}[{i}]: {exc}") from exc
    return tuple(plans)


@dataclass(frozen=True, kw_only=True)
class SnapshotSource:
    """Snapshot ``snapshot_id`` (metadata at ``metadata_location``) reads slices ``slices``.

    A node opens one source per snapshot and materialises each slice with the
    source that lists it. Raises SpecError for an invalid field.
    """

    snapshot_id: int | None
    metadata_location: str
    slices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _snapshot_id("snapshot_id", self.snapshot_id)
        _text("metadata_location", self.metadata_location)
        object.__setattr__(self, "slices", _counts("slices", self.slices))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form."""
        return {
            "snapshot_id": self.snapshot_id,
            "metadata_location": self.metadata_location,
            "slices": list(self.slices),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SnapshotSource:
        """Parse the wire form; raises SpecError naming the bad field."""
        if not isinstance(data, Mapping):
            raise SpecError("sources: each source must be a JSON object")
        return cls(
            snapshot_id=data.get("snapshot_id"),
            metadata_location=data.get("metadata_location"),  # type: ignore[arg-type]
            slices=data.get("slices") or (),
        )


def _sources(value: object) -> tuple[SnapshotSource, ...]:
    if not isinstance(value, list | tuple):
        raise SpecError("sources: must be a list of snapshot sources")
    return tuple(v if isinstance(v, SnapshotSource) else SnapshotSource.from_dict(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class RegisterAnswer(NodeMessage):
    """The answer to ``register``: what to serve, every slice plan, the slices to cache now.

    ``io_properties`` are the table's non-secret FileIO settings: any credential
    is dropped at construction (:func:`~feeder.protocol.storage.public_io_properties`),
    so none ever crosses the wire — a node reads its own (see
    :mod:`feeder.node.credentials`). Raises SpecError for an invalid field.
    """

    WHAT: ClassVar[str] = "register answer"

    snapshot_id: int | None
    metadata_location: str
    io_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    row_filter: str | None = None
    columns: tuple[str, ...] | None = None
    plans: tuple[SlicePlan, ...] = ()
    assigned: tuple[int, ...] = ()
    sources: tuple[SnapshotSource, ...] = ()

    def __post_init__(self) -> None:
        _snapshot_id("snapshot_id", self.snapshot_id)
        object.__setattr__(self, "sources", _sources(self.sources))
        _text("metadata_location", self.metadata_location)
        props = public_io_properties(_str_map("io_properties", self.io_properties))
        object.__setattr__(self, "io_properties", props)
        _optional_text("row_filter", self.row_filter)
        if self.columns is not None:
            if not isinstance(self.columns, list | tuple) or not all(
                isinstance(c, str) and c for c in self.columns
            ):
                raise SpecError(f"columns: {self.columns!r} must be null or a list of names")
            object.__setattr__(self, "columns", tuple(self.columns))
        if not isinstance(self.plans, list | tuple) or not all(
            isinstance(p, SlicePlan) for p in self.plans
        ):
            raise SpecError("plans: must be a list of slice plans")
        object.__setattr__(self, "plans", tuple(self.plans))
        object.__setattr__(self, "assigned", _counts("assigned", self.assigned))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form."""
        return {
            "snapshot_id": self.snapshot_id,
            "metadata_location": self.metadata_location,
            "io_properties": dict(self.io_properties),
            "row_filter": self.row_filter,
            "columns": list(self.columns) if self.columns is not None else None,
            "plans": [p.to_dict() for p in self.plans],
            "assigned": list(self.assigned),
            **({"sources": [src.to_dict() for src in self.sources]} if self.sources else {}),
        }

    def snapshot_sources(self) -> tuple[SnapshotSource, ...]:
        """The sources of every plan: ``sources``, or (without) the one snapshot served."""
        if self.sources:
            return self.sources
        ids = tuple(p.slice_id for p in self.plans)
        return (
            SnapshotSource(
                snapshot_id=self.snapshot_id, metadata_location=self.metadata_location, slices=ids
            ),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegisterAnswer:
        """Parse the wire form; raises SpecError naming the bad field."""
        plans = _plans("plans", data.get("plans") or [])
        return cls(
            snapshot_id=data.get("snapshot_id"),
            metadata_location=_text("metadata_location", data.get("metadata_location")),
            io_properties=data.get("io_properties") or {},
            row_filter=data.get("row_filter"),
            columns=data.get("columns"),
            plans=plans,
            assigned=data.get("assigned") or (),
            sources=data.get("sources") or (),
        )


@dataclass(frozen=True, kw_only=True)
class CachedReport(NodeRequest):
    """``cached``: node ``node_id`` cached slice ``slice_id`` with exactly ``num_rows`` rows.

    The answer is an empty object. Raises SpecError for an invalid field.
    """

    ACTION: ClassVar[str] = "cached"
    WHAT: ClassVar[str] = ACTION

    node_id: str
    slice_id: int
    num_rows: int
    nbytes: int
    storage_bytes: int = 0

    def __post_init__(self) -> None:
        _name("node_id", self.node_id)
        for name in ("slice_id", "num_rows", "nbytes", "storage_bytes"):
            _count(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form."""
        return {
            "node_id": self.node_id,
            "slice_id": self.slice_id,
            "num_rows": self.num_rows,
            "nbytes": self.nbytes,
            "storage_bytes": self.storage_bytes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CachedReport:
        """Parse the wire form; raises SpecError naming the bad field."""
        return cls(
            node_id=_name("node_id", data.get("node_id")),
            slice_id=_count("slice_id", data.get("slice_id")),
            num_rows=_count("num_rows", data.get("num_rows")),
            nbytes=_count("nbytes", data.get("nbytes")),
            storage_bytes=_count("storage_bytes", data.get("storage_bytes", 0)),
        )


@dataclass(frozen=True, kw_only=True)
class NodeHeartbeat(NodeRequest):
    """``node_heartbeat``: node ``node_id`` is alive; ``stats`` are its counters (name → count);
    ``jobs`` the jobs that read from it since its last heartbeat (at most
    :data:`MAX_JOBS_READ`: a static epoch that reads for hours without calling the
    coordinator keeps its job, and the snapshot it reads, alive).

    Raises SpecError for an invalid field.
    """

    ACTION: ClassVar[str] = "node_heartbeat"
    WHAT: ClassVar[str] = ACTION

    node_id: str
    stats: Mapping[str, int] = field(default_factory=dict)
    jobs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _name("node_id", self.node_id)
        if isinstance(self.jobs, str) or not isinstance(self.jobs, (list, tuple)):
            raise SpecError("jobs: must be a list of job names")
        if len(self.jobs) > MAX_JOBS_READ:
            raise SpecError(f"jobs: {len(self.jobs)} names, at most {MAX_JOBS_READ}")
        object.__setattr__(
            self, "jobs", tuple(_name(f"jobs[{i}]", j) for i, j in enumerate(self.jobs))
        )
        if not isinstance(self.stats, Mapping):
            raise SpecError("stats: must be a JSON object")
        for key, value in self.stats.items():
            if not isinstance(key, str):
                raise SpecError(f"stats: key {key!r} must be a string")
            _count(f"stats.{key[:64]}", value)
        object.__setattr__(self, "stats", dict(self.stats))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form."""
        out: dict[str, Any] = {"node_id": self.node_id, "stats": dict(self.stats)}
        if self.jobs:
            out["jobs"] = list(self.jobs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeHeartbeat:
        """Parse the wire form (missing or null ``stats``, ``jobs``: none); raises SpecError."""
        return cls(
            node_id=_name("node_id", data.get("node_id")),
            stats=data.get("stats") or {},
            jobs=data.get("jobs") or (),
        )


@dataclass(frozen=True, kw_only=True)
class NodeHeartbeatAnswer(NodeMessage):
    """The answer to ``node_heartbeat``: slices to cache now, or ``stop``.

    ``stop`` is true when the feeder stops or the node was declared dead. After a
    refresh it also carries the new snapshot: ``plans`` of its new slices and the
    ``sources`` that read them; ``drop`` lists slices no live snapshot holds any more
    (delete their caches) and ``retired`` the snapshots no longer served. A node
    applies ``plans``, ``sources``, ``drop`` and ``retired`` before ``assign``.
    Raises SpecError for an invalid field.
    """

    WHAT: ClassVar[str] = "node_heartbeat answer"

    stop: bool = False
    assign: tuple[int, ...] = ()
    plans: tuple[SlicePlan, ...] = ()
    sources: tuple[SnapshotSource, ...] = ()
    drop: tuple[int, ...] = ()
    retired: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stop, bool):
            raise SpecError(f"stop: {self.stop!r} must be true or false")
        object.__setattr__(self, "assign", _counts("assign", self.assign))
        object.__setattr__(self, "plans", tuple(self.plans))
        object.__setattr__(self, "sources", _sources(self.sources))
        object.__setattr__(self, "drop", _counts("drop", self.drop))
        if not isinstance(self.retired, list | tuple) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in self.retired
        ):
            raise SpecError("retired: must be a list of snapshot ids")
        object.__setattr__(self, "retired", tuple(self.retired))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able wire form (the refresh fields only when set)."""
        out: dict[str, Any] = {"stop": self.stop, "assign": list(self.assign)}
        if self.plans or self.sources or self.drop or self.retired:
            out["plans"] = [p.to_dict() for p in self.plans]
            out["sources"] = [src.to_dict() for src in self.sources]
            out["drop"] = list(self.drop)
            out["retired"] = list(self.retired)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeHeartbeatAnswer:
        """Parse the wire form (missing fields: none); raises SpecError naming the field."""
        return cls(
            stop=data.get("stop", False),
            assign=data.get("assign") or (),
            plans=_plans("plans", data.get("plans") or []),
            sources=data.get("sources") or (),
            drop=data.get("drop") or (),
            retired=data.get("retired") or (),
        )
