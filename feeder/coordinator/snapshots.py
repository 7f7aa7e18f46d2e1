"""The snapshots a following feeder serves at once, over one session-wide space of slice ids.

Pure bookkeeping (the coordinator guards it with its lock). A session starts with
one snapshot whose slice ids are its plan positions. A refresh adds the table's new
snapshot: every slice of a data file the new snapshot kept (same file, same row
groups, no delete files) keeps its id and its cache; slices of added files (and of
files with delete files, whose rows may have changed) get new ids after every id
used so far. So a slice id names the same rows in every live snapshot, and data
nodes serve slices by id whatever snapshot a ticket names.

A snapshot's epoch order is computed over the whole id space with a row count of 0
for every slice it does not hold (:meth:`LiveSnapshots.counts`), so the shuffle
code is unchanged and a session that never refreshed orders exactly as before.
A snapshot is *retired* once no job's epoch that a consumer may still read uses it;
the slices only it held are then dropped from the nodes' caches.

A driver restart rebuilds the same id space from the journal
(:meth:`LiveSnapshots.state_text`, :meth:`LiveSnapshots.restored`): every live snapshot
is planned again from the catalog, checked against its recorded plan digest, and its
plans get the slice ids they had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from feeder.coordinator.served import ServedSnapshot
from feeder.protocol.slice_plan import SlicePlan
from feeder.protocol.tickets import snapshot_key
from jobs.errors import SpecError


def _identity(plan: SlicePlan) -> tuple[str, tuple[int, ...]] | None:
    """What makes two snapshots' slices the same rows (None: never shared)."""
    return None if plan.has_deletes else (plan.file_path, plan.row_groups)


def plan_digest(plans: Sequence[SlicePlan]) -> str:
    """The sha256 of a snapshot's slice plans numbered by position (as planning returns them).

    What a restart checks a snapshot planned again against: same digest, same slices.
    """
    numbered = [replace(p, slice_id=i).to_dict() for i, p in enumerate(plans)]
    return hashlib.sha256(json.dumps(numbered, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Added:
    """What :meth:`LiveSnapshots.add` did.

    Attributes:
        served: the new snapshot, its plans renumbered to session slice ids.
        new: the plans of slices no live snapshot held (the nodes cache only these).
        kept: how many of its slices were already live (their caches are reused).
    """

    served: ServedSnapshot
    new: tuple[SlicePlan, ...]
    kept: int


class LiveSnapshots:
    """The live snapshots of one session and the plans of every slice id it handed out.

    Args:
        first: the snapshot the session starts with (its plan positions are its ids).
    """

    def __init__(self, first: ServedSnapshot) -> None:
        if any(p.slice_id != i for i, p in enumerate(first.plans)):
            raise ValueError("the first snapshot's slice ids must be its plan positions")
        #: the plan of every slice id a live snapshot holds
        self.plans: dict[int, SlicePlan] = {p.slice_id: p for p in first.plans}
        #: slice ids handed out so far (the next new slice gets this id)
        self.slice_count = len(first.plans)
        self._live: dict[int, ServedSnapshot] = {snapshot_key(first.snapshot_id): first}
        self._members: dict[int, frozenset[int]] = {
            snapshot_key(first.snapshot_id): frozenset(self.plans)
        }
        #: the newest snapshot added (new epochs use it once its slices are cached)
        self.newest = snapshot_key(first.snapshot_id)
        self._text: str | None = None  # state_text, until the live snapshots change

    @classmethod
    def restored(
        cls,
        snapshots: Sequence[tuple[ServedSnapshot, Sequence[int] | None]],
        slice_count: int | None,
    ) -> LiveSnapshots:
        """Rebuild a session's live snapshots from its journal (a restarted driver).

        Args:
            snapshots: oldest first, each snapshot as planned again (plans numbered by
                position) with the session slice id of each of its plans (None: its
                positions, a session that never refreshed).
            slice_count: slice ids the session had handed out (None: the first
                snapshot's plan count).

        Raises:
            ValueError: the ids do not fit the plans (a damaged journal).
        """
        first = snapshots[0][0]
        live = cls(replace(first, plans=()))
        live._live.clear()
        live._members.clear()
        live.slice_count = slice_count if slice_count is not None else len(first.plans)
        for served, ids in snapshots:
            ids = list(ids) if ids is not None else list(range(len(served.plans)))
            if len(ids) != len(served.plans) or len(set(ids)) != len(ids):
                raise ValueError(
                    f"snapshot {served.snapshot_id}: {len(ids)} recorded slice ids for "
                    f"{len(served.plans)} planned slices"
                )
            if any(not 0 <= s < live.slice_count for s in ids):
                raise ValueError(f"snapshot {served.snapshot_id}: a slice id out of range")
            plans = []
            for s, plan in zip(ids, served.plans, strict=True):
                numbered = replace(plan, slice_id=s)
                known = live.plans.setdefault(s, numbered)
                if known != numbered:
                    raise ValueError(f"slice {s} names other rows in two snapshots")
                plans.append(numbered)
            key = snapshot_key(served.snapshot_id)
            live._live[key] = replace(served, plans=tuple(plans))
            live._members[key] = frozenset(ids)
            live.newest = key
        return live

    def state_text(self) -> str:
        """The live snapshots as compact JSON for the journal (PROTOCOL.md, *Journal*):
        ``{"slice_count", "live": [{"snapshot_id", "plan_digest", "slices"}]}``, oldest
        first; ``slices`` are the session ids of the snapshot's plans in plan order.
        Cached until the live snapshots change, so every journal write can afford it."""
        if self._text is None:
            live = [
                {
                    "snapshot_id": served.snapshot_id,
                    "plan_digest": plan_digest(served.plans),
                    "slices": [p.slice_id for p in served.plans],
                }
                for served in self._live.values()
            ]
            state = {"slice_count": self.slice_count, "live": live}
            self._text = json.dumps(state, separators=(",", ":"))
        return self._text

    def __contains__(self, key: int) -> bool:
        return key in self._live

    def live(self) -> list[int]:
        """The live snapshots' keys, oldest first."""
        return list(self._live)

    def get(self, key: int) -> ServedSnapshot:
        """The live snapshot ``key``; raises KeyError if it is not live."""
        return self._live[key]

    def members(self, key: int) -> frozenset[int]:
        """The slice ids snapshot ``key`` holds; raises KeyError if it is not live."""
        return self._members[key]

    def counts(self, key: int, row_counts: Sequence[int | None]) -> list[int]:
        """Row counts over every slice id: the slice's for ``key``'s slices, 0 for others.

        Raises ValueError if one of ``key``'s slices has no count yet.
        """
        members = self._members[key]
        out = [0] * self.slice_count
        for s in members:
            n = row_counts[s]
            if n is None:
                raise ValueError(f"slice {s} of snapshot {key} is not cached yet")
            out[s] = n
        return out

    def add(self, served: ServedSnapshot) -> Added:
        """Add ``served`` (its plans numbered by position) as the newest live snapshot.

        Raises:
            SpecError: its schema differs from the newest live snapshot's (a refresh
                cannot change the columns consumers get: restart the feeder).
            ValueError: the snapshot is already live.
        """
        key = snapshot_key(served.snapshot_id)
        if key in self._live:
            raise ValueError(f"snapshot {key} is already served")
        newest = self._live[self.newest]
        if not served.schema.equals(newest.schema):
            raise SpecError(
                f"snapshot {key} of {served.table} has another schema than snapshot "
                f"{self.newest} ({served.schema.names} vs {newest.schema.names}): a refresh "
                "keeps the columns consumers get; restart the feeder to serve the new schema"
            )
        live_ids: dict[tuple[str, tuple[int, ...]], int] = {}
        for members in self._members.values():
            for s in members:
                ident = _identity(self.plans[s])
                if ident is not None:
                    live_ids[ident] = s
        plans: list[SlicePlan] = []
        new: list[SlicePlan] = []
        for plan in served.plans:
            ident = _identity(plan)
            reused = live_ids.get(ident) if ident is not None else None
            if reused is not None:
                plans.append(self.plans[reused])
                continue
            numbered = replace(plan, slice_id=self.slice_count)
            self.slice_count += 1
            self.plans[numbered.slice_id] = numbered
            plans.append(numbered)
            new.append(numbered)
        renumbered = replace(served, plans=tuple(plans))
        self._live[key] = renumbered
        self._members[key] = frozenset(p.slice_id for p in plans)
        self.newest = key
        self._text = None
        return Added(renumbered, tuple(new), len(plans) - len(new))

    def retire(self, key: int) -> list[int]:
        """Stop serving snapshot ``key``; return the slice ids no live snapshot holds now.

        Raises ValueError for the newest snapshot (there is always one to serve).
        """
        if key == self.newest:
            raise ValueError(f"snapshot {key} is the newest; it cannot be retired")
        gone = self._members.pop(key)
        del self._live[key]
        still = set().union(*self._members.values())
        freed = sorted(gone - still)
        for s in freed:
            del self.plans[s]
        self._text = None
        return freed
