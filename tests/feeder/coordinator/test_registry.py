"""NodeRegistry (pure, fake clock): slot ownership, readiness, node death, locations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.coordinator.registry import NodeRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(deadline=None)
@given(st.integers(0, 60), st.integers(1, 6))
def test_slots_own_every_slice_exactly_once(num_slices, slots):
    reg = NodeRegistry(num_slices, slots=slots, node_timeout=10)
    owned = [s for slot in range(slots) for s in reg.slot_slices(slot)]
    assert sorted(owned) == list(range(num_slices))


def test_ready_once_every_slice_is_cached_and_counts_must_agree():
    reg = NodeRegistry(3, slots=2, node_timeout=10)
    assert reg.register("a", slot=0, location="grpc://a:1") == [0, 2]
    assert reg.register("b", slot=1, location="grpc://b:1") == [1]
    reg.cached("a", 0, 10, 100)
    reg.cached("a", 2, 5, 50)
    assert not reg.ready
    with pytest.raises(ValueError):
        reg.exact_row_counts()
    reg.cached("b", 1, 7, 70)
    assert reg.ready and reg.exact_row_counts() == [10, 7, 5]
    with pytest.raises(ValueError, match="another"):
        reg.cached("b", 0, 11, 1)
    reg.cached("b", 0, 10, 100)  # a second copy with the same count is fine
    assert reg.cached_by[0] == ["a", "b"]


def test_locations_list_cachers_then_owner_then_others_and_skip_the_dead():
    reg = NodeRegistry(2, slots=3, node_timeout=10)
    for i in range(3):
        reg.register(f"n{i}", slot=i, location=f"grpc://n{i}:1")
        reg.heartbeat(f"n{i}", {})
    reg.cached("n2", 0, 4, 4)
    assert reg.locations(0) == ["grpc://n2:1", "grpc://n0:1", "grpc://n1:1"]
    reg.mark_dead("n2")
    assert reg.locations(0) == ["grpc://n0:1", "grpc://n1:1"]
    with pytest.raises(ValueError):
        reg.locations(5)


def test_nodes_that_never_reported_are_listed_only_when_nothing_else_is():
    reg = NodeRegistry(1, slots=2, node_timeout=10)
    reg.register("new", slot=0, location="grpc://new:1")
    assert reg.locations(0) == ["grpc://new:1"]
    reg.register("old", slot=1, location="grpc://old:1")
    reg.heartbeat("old", {})
    assert reg.locations(0) == ["grpc://old:1"]


def test_uncached_slices_of_a_dead_node_go_to_a_live_one_and_a_replacement_takes_the_slot():
    reg = NodeRegistry(4, slots=2, node_timeout=10)
    reg.register("a", slot=0, location="grpc://a:1")
    reg.register("b", slot=1, location="grpc://b:1")
    reg.cached("a", 0, 1, 1)
    assert reg.mark_dead("a") == [2]
    assert reg.heartbeat("b", {"rows_served": 3}) == [2]
    assert reg.heartbeat("b", {}) == []
    assert reg.nodes["b"].stats["rows_served"] == 3
    assert reg.mark_dead("a") == []  # idempotent
    assert reg.register("a2", slot=0, location="grpc://a2:1") == [0, 2]
    with pytest.raises(ValueError, match="dead"):
        reg.heartbeat("a", {})
    with pytest.raises(ValueError, match="already"):
        reg.register("b", slot=1, location="grpc://b:2")


def test_silent_nodes_expire():
    clock = FakeClock()
    reg = NodeRegistry(2, slots=2, node_timeout=5, clock=clock)
    reg.register("a", slot=0, location="grpc://a:1")
    reg.register("b", slot=1, location="grpc://b:1")
    clock.now = 4
    reg.heartbeat("b", {})
    clock.now = 6
    assert reg.expire() == ["a"]
    assert [n.node_id for n in reg.alive()] == ["b"]


def test_a_small_node_keeps_what_fits_and_the_rest_goes_to_a_node_with_room():
    reg = NodeRegistry(6, slots=2, node_timeout=10, slice_sizes=[10] * 6)
    assert reg.register("big", slot=0, location="grpc://big:1", capacity=45) == [0, 2, 4]
    # slot 1 owns 1, 3, 5 (30 bytes) but has room for 20: slice 5 goes to "big"
    assert reg.register("small", slot=1, location="grpc://small:1", capacity=20) == [1, 3]
    assert reg.heartbeat("big", {}) == [5]
    assert reg.owner == [0, 1, 0, 1, 0, 0]
    assert reg.shortfall() == []
    assert reg.room(reg.nodes["small"]) == 0 and reg.room(reg.nodes["big"]) == 5
    reg.heartbeat("small", {})
    reg.cached("big", 5, 3, 10)
    assert reg.locations(5) == ["grpc://big:1", "grpc://small:1"]


def test_slices_no_node_has_room_for_wait_and_are_a_shortfall_once_every_slot_registered():
    reg = NodeRegistry(4, slots=2, node_timeout=10, slice_sizes=[10, 10, 10, 10])
    assert reg.register("a", slot=0, location="grpc://a:1", capacity=10) == [0]
    assert reg.owner[2] is None
    assert reg.shortfall() == []  # slot 1 has not told its capacity yet
    assert reg.register("b", slot=1, location="grpc://b:1", capacity=15) == [1]
    assert reg.shortfall() == [2, 3]
    assert reg.heartbeat("a", {}) == [] and reg.heartbeat("b", {}) == []
    # a roomier replacement for slot 1 takes the slices nobody had room for
    reg.mark_dead("b")
    assert reg.register("b2", slot=1, location="grpc://b2:1", capacity=100) == [1, 2, 3]
    assert reg.shortfall() == []


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 50), max_size=30),
    st.lists(st.one_of(st.none(), st.integers(0, 400)), min_size=1, max_size=4),
)
def test_no_node_is_asked_for_more_than_its_capacity_and_every_slice_is_placed_or_short(
    sizes, capacities
):
    reg = NodeRegistry(len(sizes), slots=len(capacities), node_timeout=10, slice_sizes=sizes)
    for slot, cap in enumerate(capacities):
        reg.register(f"n{slot}", slot=slot, location=f"grpc://n{slot}:1", capacity=cap)
    placed = [s for n in reg.alive() for s in n.placed]
    assert sorted(placed) == sorted(set(placed))  # each slice asked of one node
    for node in reg.alive():
        assert node.capacity is None or sum(sizes[s] for s in node.placed) <= node.capacity
    assert sorted(placed + reg.shortfall()) == list(range(len(sizes)))
    if None in capacities or sum(sizes) == 0:
        assert reg.shortfall() == []


def test_a_dead_nodes_uncached_slices_go_only_to_nodes_with_room_for_them():
    reg = NodeRegistry(6, slots=3, node_timeout=10, slice_sizes=[10] * 6)
    reg.register("a", slot=0, location="grpc://a:1", capacity=20)  # full: 0, 3
    reg.register("b", slot=1, location="grpc://b:1", capacity=30)  # 1, 4 and room for one
    reg.register("c", slot=2, location="grpc://c:1", capacity=20)  # 2, 5
    reg.cached("c", 2, 1, 10)
    assert reg.mark_dead("c") == [5]
    assert reg.heartbeat("a", {}) == [] and reg.heartbeat("b", {}) == [5]
    assert reg.room(reg.nodes["b"]) == 0


def test_a_nodes_local_socket_is_listed_in_its_status_entry():
    reg = NodeRegistry(2, slots=2, node_timeout=10)
    reg.register("a", slot=0, location="grpc://h:1", local_socket="/run/f/icefeed-a-1.sock")
    reg.register("b", slot=1, location="grpc://h:2")
    entries = {n.node_id: n.to_dict() for n in reg.nodes.values()}
    assert entries["a"]["local_socket"] == "/run/f/icefeed-a-1.sock"
    assert entries["b"]["local_socket"] is None
    assert entries["a"]["rows_served_local"] == 0
