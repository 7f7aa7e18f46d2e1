"""The coordinator's half of the MIX shuffle: windows as tickets (PROTOCOL.md, *Epoch order*).

Static mode: a consumer's share of the epoch order is a list of window reads
(:func:`feeder.protocol.mix.consumer_reads`); each becomes one Flight endpoint per
piece (a range of one slice's block stream, signed like any slice range), and
every endpoint carries the read it belongs to in its ``app_metadata``:
``{"read": i, "window": w, "rows": R, "keep": [a, b], "pieces": k}``.

Dynamic mode: the lease units of an epoch are its windows, as
``SliceRange(window, start, stop)`` over positions of the window's permuted
order, so :class:`feeder.coordinator.leases.LeaseBook` tracks them unchanged
(an expired lease's rest is the window from the rows delivered on); a lease
answer carries the window's pieces as tickets.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.flight as flight

from feeder.protocol.elastic import elastic_spans
from feeder.protocol.messages import EpochParams, StaticRequest
from feeder.protocol.mix import (
    MixParams,
    WindowLayout,
    WindowRead,
    consumer_reads,
    consumer_spans,
    window_layout,
)
from feeder.protocol.shuffle import SliceRange

Sign = Callable[[EpochParams, SliceRange], str]
Locate = Callable[[int], list[str]]


def read_metadata(read: WindowRead, index: int) -> dict[str, Any]:
    """The JSON a consumer needs to put a window read's pieces back together."""
    return {
        "read": index,
        "window": read.window,
        "rows": read.rows,
        "keep": [read.keep_start, read.keep_stop],
        "pieces": len(read.pieces),
        "sizes": [piece.num_rows for piece in read.pieces],
    }


def request_spans(request: StaticRequest, total: int) -> list[tuple[int, int]]:
    """Return the epoch positions a static request delivers, in order (any shuffle).

    With ``resume_from`` (elastic resume) they are the request's share of what that
    shape had not delivered. Raises SpecError when ``resume_from`` does not fit.
    """
    r = request
    split: dict[str, Any] = {
        "rank": r.rank,
        "world_size": r.world_size,
        "drop_last": r.drop_last,
        "worker": r.worker,
        "num_workers": r.num_workers,
        "unit": r.unit,
        "skip": r.skip_rows,
    }
    if r.resume_from is None:
        return consumer_spans(total, **split)
    return elastic_spans(total, r.resume_from, **split)


def static_reads(
    request: StaticRequest, counts: Sequence[int], groups: Groups | None = None
) -> list[WindowRead]:
    """Return one consumer's MIX window reads, in order (pure: no lock needed); with
    ``groups``, over the windows built per group (:func:`grouped_layout`)."""
    spans = request_spans(request, sum(counts))
    if groups is None:
        layout = _layout(tuple(counts), request.mix)
    else:
        layout = grouped_layout(tuple(counts), request.mix, groups).layout
    return consumer_reads(counts, spans, request.mix, layout=layout)


def read_slices(reads: Sequence[WindowRead]) -> set[int]:
    """The slices the pieces of ``reads`` come from (whose locations an answer needs)."""
    return {piece.slice_id for read in reads for piece in read.pieces}


def static_endpoints(
    request: StaticRequest, reads: Sequence[WindowRead], sign: Sign, locate: Locate
) -> tuple[list[flight.FlightEndpoint], int]:
    """Return one consumer's MIX endpoints (in read order) and the rows it delivers."""
    endpoints: list[flight.FlightEndpoint] = []
    total = 0
    places: dict[int, list[flight.Location]] = {}  # a slice's locations, made once per plan
    for index, read in enumerate(reads):
        meta = json.dumps(read_metadata(read, index), separators=(",", ":")).encode()
        total += read.num_rows
        for piece in read.pieces:
            where = places.get(piece.slice_id)
            if where is None:
                where = places[piece.slice_id] = [
                    flight.Location(uri) for uri in locate(piece.slice_id)
                ]
            endpoints.append(flight.FlightEndpoint(sign(request, piece), where, app_metadata=meta))
    return endpoints, total


@functools.lru_cache(maxsize=16)
def _layout(counts: tuple[int, ...], mix: MixParams) -> WindowLayout:
    """The epoch's window layout, computed once per (row counts, knobs): every plan and lease of an
    epoch asks for it (recomputing it was most of a lease's cost with many windows)."""
    layout = window_layout(counts, mix)
    for array in (layout.bounds, layout.sizes, layout.offsets):
        array.setflags(write=False)
    return layout


def lease_units(params: EpochParams, counts: Sequence[int]) -> list[SliceRange]:
    """Return an epoch's dynamic-mode units: one per window, ``SliceRange(w, 0, rows)``."""
    layout = _layout(tuple(counts), params.mix)
    return [SliceRange(w, 0, int(n)) for w, n in enumerate(layout.sizes.tolist()) if n > 0]


def lease_read(params: EpochParams, counts: Sequence[int], unit: SliceRange) -> WindowRead:
    """Return the window read a MIX lease of ``unit`` delivers."""
    layout = _layout(tuple(counts), params.mix)
    w = unit.slice_id
    return WindowRead(w, int(layout.sizes[w]), unit.start, unit.stop, tuple(layout.pieces(w)))


def lease_window(
    params: EpochParams, read: WindowRead, sign: Sign, locate: Locate
) -> dict[str, Any]:
    """Return the ``window`` and ``pieces`` fields of a MIX lease answer for ``read``."""
    return {
        "window": read_metadata(read, 0),
        "pieces": [
            {"ticket": sign(params, piece), "locations": locate(piece.slice_id)}
            for piece in read.pieces
        ],
    }


# --- locality: windows per host group (docs/feeder.md, *Locality*) ---------------------------

#: an epoch's host groups: ``(host, slice ids)`` each, hosts sorted ("" for slices whose
#: nodes named no host); every slice with rows is in exactly one group
Groups = tuple[tuple[str, tuple[int, ...]], ...]


def placement_groups(counts: Sequence[int], host_of: Callable[[int], str]) -> Groups:
    """Group the slices with rows by the host that holds them (``host_of(slice)``)."""
    grouped: dict[str, list[int]] = {}
    for s, n in enumerate(counts):
        if n > 0:
            grouped.setdefault(host_of(s), []).append(s)
    return tuple((host, tuple(ids)) for host, ids in sorted(grouped.items()))


@dataclass(frozen=True)
class GroupedLayout:
    """The windows of every host group, end to end, as one :class:`WindowLayout`:
    group ``g``'s windows are ``starts[g] .. starts[g + 1] - 1`` and mix only its slices.

    A slice's block-stream bounds stay at 0 before its group's windows and at its row
    count after them, so ``layout.pieces(w)`` lists only window ``w``'s group's slices
    and :func:`~feeder.protocol.mix.window_reads` cuts epoch positions as it does
    without groups (static mode reads it like any layout).
    """

    hosts: tuple[str, ...]
    layout: WindowLayout
    starts: tuple[int, ...]  # first window of each group, then the number of windows

    def group_of(self, window: int) -> int:
        """The group whose windows include ``window``."""
        return bisect.bisect_right(self.starts, window) - 1

    def read(self, unit: SliceRange) -> WindowRead:
        """The window read of a lease of ``unit`` (``SliceRange(window, start, stop)``)."""
        w = unit.slice_id
        return WindowRead(
            w, int(self.layout.sizes[w]), unit.start, unit.stop, tuple(self.layout.pieces(w))
        )

    def units(self) -> list[SliceRange]:
        """Every non-empty window as a lease unit, group by group."""
        sizes = self.layout.sizes.tolist()
        return [SliceRange(w, 0, int(n)) for w, n in enumerate(sizes) if n > 0]


@functools.lru_cache(maxsize=16)
def grouped_layout(counts: tuple[int, ...], mix: MixParams, groups: Groups) -> GroupedLayout:
    """The epoch's windows built per host group: each group's slices get their own
    :func:`~feeder.protocol.mix.window_layout` (the other slices' counts set to 0), so
    every row of the table is in exactly one window, as without groups. Cached like
    :func:`_layout`: every plan and lease of the epoch asks for it."""
    total = np.asarray(counts, dtype=np.int64).reshape(-1)
    done = np.zeros_like(total)  # rows of the groups laid out so far, per slice
    columns = [done[:, None].copy()]
    sizes: list[np.ndarray] = []
    starts = [0]
    for _host, ids in groups:
        masked = np.zeros_like(total)
        masked[list(ids)] = total[list(ids)]
        part = window_layout(masked.tolist(), mix)
        columns.append(part.bounds[:, 1:] + done[:, None])
        sizes.append(part.sizes)
        starts.append(starts[-1] + part.num_windows)
        done = done + masked
    bounds = np.concatenate(columns, axis=1)
    size = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
    layout = WindowLayout(bounds, size.astype(np.int64), offsets)
    for array in (layout.bounds, layout.sizes, layout.offsets):
        array.setflags(write=False)
    return GroupedLayout(tuple(h for h, _ in groups), layout, tuple(starts))
