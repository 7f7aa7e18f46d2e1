"""LiveSnapshots (pure): a refresh keeps the ids of kept files' slices, numbers new ones
after every id used, and retiring a snapshot frees only the slices no live one holds; a
restart rebuilds the same ids (and a real coordinator serves them)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from feeder.coordinator.registry import NodeRegistry
from feeder.coordinator.service import Coordinator
from feeder.coordinator.snapshots import LiveSnapshots, plan_digest
from feeder.protocol.shuffle import epoch_stream
from feeder.protocol.tickets import TicketSigner, new_key
from jobs.errors import SpecError
from tests.feeder.coordinator.served_snapshots import served_snapshot

_snapshot = served_snapshot


A0, A1, B0 = ("a", (0,), False), ("a", (1,), False), ("b", (0,), False)


def test_a_refresh_keeps_the_ids_of_kept_slices_and_numbers_new_ones_after_all():
    live = LiveSnapshots(_snapshot(1, [A0, A1, B0]))
    # file b removed, file c added (sorted before b would be, ids are not positions)
    added = live.add(_snapshot(2, [A0, A1, ("c", (0,), False)]))
    assert [p.slice_id for p in added.served.plans] == [0, 1, 3]
    assert [p.file_path for p in added.new] == ["c"] and added.kept == 2
    assert live.members(2) == {0, 1, 3} and live.newest == 2
    # the old snapshot's counts are its own; a new epoch's are the new snapshot's
    counts = [10, 20, 30, 40]
    assert live.counts(1, counts) == [10, 20, 30, 0]
    assert live.counts(2, counts) == [10, 20, 0, 40]
    assert (
        sum(r.num_rows for r in epoch_stream(live.counts(2, counts), seed=1, epoch=0, shuffle=True))
        == 70
    )
    # retiring the first frees only b's slice
    assert live.retire(1) == [2]
    assert live.live() == [2]


def test_a_restart_rebuilds_the_same_slice_ids_from_the_journalled_state():
    live = LiveSnapshots(_snapshot(1, [A0, A1, B0]))
    live.add(_snapshot(2, [A0, ("c", (0,), False)]))  # a1, b removed; c gets id 3
    live.add(_snapshot(3, [A0, ("c", (0,), False), ("d", (0,), False)]))  # d gets id 4
    assert live.retire(1) == [1, 2]
    state = json.loads(live.state_text())
    assert state["slice_count"] == 5
    assert [(e["snapshot_id"], e["slices"]) for e in state["live"]] == [(2, [0, 3]), (3, [0, 3, 4])]
    # the restarted driver plans each live snapshot again (ids = plan positions)
    planned = {
        2: _snapshot(2, [A0, ("c", (0,), False)]),
        3: _snapshot(3, [A0, ("c", (0,), False), ("d", (0,), False)]),
    }
    for entry in state["live"]:
        assert entry["plan_digest"] == plan_digest(planned[entry["snapshot_id"]].plans)
    again = LiveSnapshots.restored(
        [(planned[e["snapshot_id"]], e["slices"]) for e in state["live"]], state["slice_count"]
    )
    assert again.live() == [2, 3] and again.newest == 3 and again.slice_count == 5
    assert again.plans == live.plans and again.members(2) == {0, 3}
    assert again.get(3).plans == live.get(3).plans
    assert again.state_text() == live.state_text()
    counts = [10, None, None, 30, 40]
    assert again.counts(3, counts) == live.counts(3, counts) == [10, 0, 0, 30, 40]
    # a later refresh numbers its new slices after every id the session handed out
    added = again.add(_snapshot(4, [A0, ("e", (0,), False)]))
    assert [p.slice_id for p in added.new] == [5]
    # a journal without live snapshots (version 1): one snapshot, ids = plan positions
    alone = _snapshot(1, [A0, A1, B0])
    assert LiveSnapshots.restored([(alone, None)], None).state_text() == (
        LiveSnapshots(alone).state_text()
    )
    # ids that do not fit the plans are refused (a damaged journal)
    with pytest.raises(ValueError, match="recorded slice ids"):
        LiveSnapshots.restored([(planned[2], [0])], 5)
    with pytest.raises(ValueError, match="out of range"):
        LiveSnapshots.restored([(planned[2], [0, 7])], 5)


def test_slices_with_delete_files_are_never_shared_between_snapshots():
    live = LiveSnapshots(_snapshot(1, [("a", (0, 1), True)]))
    added = live.add(_snapshot(2, [("a", (0, 1), True)]))
    assert added.kept == 0 and [p.slice_id for p in added.new] == [1]


def test_a_schema_change_an_unknown_count_and_retiring_the_newest_are_refused():
    live = LiveSnapshots(_snapshot(1, [A0]))
    other = pa.schema([("id", pa.int64()), ("x", pa.float64())])
    with pytest.raises(SpecError, match=r"another schema.*restart the feeder"):
        live.add(_snapshot(2, [A0], schema=other))
    live.add(_snapshot(3, [A0, B0]))
    with pytest.raises(ValueError, match="not cached yet"):
        live.counts(3, [5, None])
    with pytest.raises(ValueError, match="newest"):
        live.retire(3)
    with pytest.raises(ValueError, match="already served"):
        live.add(_snapshot(3, [A0]))


def test_the_registry_places_added_slices_and_forgets_dropped_ones():
    reg = NodeRegistry(2, slots=2, node_timeout=10, slice_sizes=[100, 100])
    reg.register("a", slot=0, location="grpc://a:1", capacity=250)
    reg.register("b", slot=1, location="grpc://b:1")
    for s in (0, 1):
        reg.cached("a" if s == 0 else "b", s, 10, 100, storage_bytes=7)
    assert reg.ready
    ids = reg.add_slices([100, 100])
    assert ids == [2, 3] and not reg.ready and reg.ready_for([0, 1])
    assert reg.heartbeat("a", {}) == [2] and reg.heartbeat("b", {}) == [3]
    reg.cached("a", 2, 5, 50, storage_bytes=40)
    reg.cached("b", 3, 5, 50, storage_bytes=60)
    assert reg.ready and sum(reg.storage_bytes[s] for s in ids) == 100
    reg.drop([0])
    assert reg.live_slices() == [1, 2, 3] and reg.nodes["a"].reserved == 100
    # a dropped slice is never placed again, even on a new node of its slot
    reg.mark_dead("a")
    assert 0 not in reg.register("a2", slot=0, location="grpc://a2:1")


def test_a_coordinator_on_restored_snapshots_places_their_slices_and_numbers_new_ones_after_all():
    c0 = ("c", (0,), False)
    restored = LiveSnapshots.restored([(_snapshot(2, [A0, c0]), [0, 3])], 4)  # ids 1, 2 gone
    coordinator = Coordinator(
        restored.get(restored.newest), snapshots=restored, signer=TicketSigner(new_key()), slots=1
    )
    try:
        reg = coordinator.registry
        assert reg.num_slices == 4 and reg.live_slices() == [0, 3]
        assert reg.register("n", slot=0, location="grpc://127.0.0.1:1") == [0, 3]
        record = coordinator.add_snapshot(_snapshot(3, [A0, c0, ("d", (0,), False)]))
        assert record["kept_slices"] == 2 and record["added_slices"] == 1
        assert restored.members(3) == {0, 3, 4} and reg.num_slices == 5
        assert reg.heartbeat("n", {}) == [4]  # the new slice goes to the node
    finally:
        coordinator.close()
