"""Locality on the coordinator's side: which host holds a lease unit, and how many of a
lease's rows its consumer reads from a node on its own host (docs/feeder.md, *Locality*).

Pure functions of the registry's placement (the caller holds the coordinator's lock).
A slice's host is the host of the first live node that caches it (else of its owner's
node); slices whose nodes named no host have none ("") and are nobody's local work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from feeder.coordinator import mixplan
from feeder.coordinator.epochs import EpochBook
from feeder.coordinator.leases import Homes
from feeder.coordinator.registry import NodeRegistry
from feeder.protocol.mix import WindowRead
from feeder.protocol.shuffle import SliceRange
from feeder.protocol.shuffle_kind import Shuffle


def slice_host(registry: NodeRegistry, slice_id: int) -> str:
    """The host that holds ``slice_id`` ("" when its nodes named none)."""
    hosts = registry.slice_hosts(slice_id)
    return hosts[0] if hosts else ""


def mix_groups(registry: NodeRegistry, counts: Sequence[int]) -> mixplan.Groups:
    """The host groups of an epoch's MIX windows, from the current placement."""
    return mixplan.placement_groups(counts, lambda s: slice_host(registry, s))


def slot_groups(registry: NodeRegistry, counts: Sequence[int]) -> mixplan.Groups:
    """The placement groups of a static MIX epoch with locality: slices by the slot that
    owns them (``slot-00000``, ...; "" for a slice no slot has room for). A slot keeps
    its slices when its node is replaced, so every rank's plan of an epoch sees the
    same groups; a group's host is its slot's live node's."""

    def slot(s: int) -> str:
        owner = registry.owner[s]
        return "" if owner is None else f"slot-{owner:05d}"

    return mixplan.placement_groups(counts, slot)


def book_homes(entry: EpochBook, registry: NodeRegistry, counts: Sequence[int]) -> Homes | None:
    """The hosts of each unit of ``entry``'s book: a MIX window's host group (None: MIX
    windows without groups span every host), a slice range's slice's hosts."""
    if entry.params.shuffle is Shuffle.MIX:
        if entry.groups is None:
            return None
        layout = mixplan.grouped_layout(tuple(counts), entry.params.mix, entry.groups)
        hosts = layout.hosts

        def window_home(unit: SliceRange) -> tuple[str, ...]:
            host = hosts[layout.group_of(unit.slice_id)]
            return (host,) if host else ()

        return window_home
    return lambda unit: registry.slice_hosts(unit.slice_id)


def index_homes(entry: EpochBook, registry: NodeRegistry, counts: Sequence[int]) -> None:
    """Have ``entry``'s book lease by host with the current placement (again only when
    the placement changed since it last did)."""
    if entry.homes_version != registry.version:
        entry.book.set_homes(book_homes(entry, registry, counts))
        entry.homes_version = registry.version


def local_rows(
    registry: NodeRegistry,
    host: str | None,
    rows: int,
    first: Mapping[int, str],
    read: WindowRead | None = None,
) -> int:
    """Of a lease's ``rows``, how many its consumer on ``host`` reads from a node on that
    host: ``first`` maps each slice the lease reads to the location it reads first; a MIX
    ``read`` counts its pieces' rows in proportion."""
    if host is None:
        return 0
    hosts = {n.location: n.host for n in registry.alive()}
    if read is None:
        (location,) = first.values()
        return rows if hosts.get(location) == host else 0
    near = sum(p.num_rows for p in read.pieces if hosts.get(first.get(p.slice_id, "")) == host)
    return rows * near // read.rows if read.rows else 0
