"""The coordinator's MIX plans per host group (locality): every row in exactly one window."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.coordinator.mixplan import grouped_layout, placement_groups
from feeder.protocol.mix import MixParams
from feeder.protocol.shuffle import SliceRange
from tests.feeder.mix_rows import piece_rows

MIX = MixParams(block_rows=4, window_rows=24)


def _rows(counts: list[int], piece: SliceRange) -> list[int]:
    return piece_rows(counts, piece, MIX, seed=3, epoch=1).tolist()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=9),
    st.lists(st.sampled_from(["h0", "h1", "h2", ""]), min_size=9, max_size=9),
)
def test_host_group_windows_hold_every_row_once_and_only_their_hosts_slices(counts, hosts):
    groups = placement_groups(counts, lambda s: hosts[s])
    layout = grouped_layout(tuple(counts), MIX, groups)
    seen: Counter = Counter()
    for unit in layout.units():
        read = layout.read(unit)
        assert read.rows == unit.num_rows == sum(p.num_rows for p in read.pieces)
        host = layout.hosts[layout.group_of(unit.slice_id)]
        assert {hosts[p.slice_id] for p in read.pieces} == {host}
        for piece in read.pieces:
            seen.update(_rows(counts, piece))
    assert seen == Counter(range(sum(counts)))


def test_groups_are_sorted_by_host_and_skip_empty_slices():
    groups = placement_groups([5, 0, 7, 2], lambda s: ["b", "a", "a", "b"][s])
    assert groups == (("a", (2,)), ("b", (0, 3)))
    layout = grouped_layout((5, 0, 7, 2), MIX, groups)
    assert layout.starts == (0, 1, 2)
    assert [layout.group_of(w) for w in (0, 1)] == [0, 1]
