"""Node ↔ coordinator messages (pure): round trips, wire fields, garbage refused (SpecError)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.node_messages import (
    CachedReport,
    NodeHeartbeat,
    NodeHeartbeatAnswer,
    RegisterAnswer,
    RegisterRequest,
    SnapshotSource,
)
from feeder.protocol.slice_plan import SlicePlan
from jobs.errors import SpecError

PLAN = SlicePlan(
    slice_id=0, file_path="s3://b/f", row_groups=(0, 1), estimated_rows=9, estimated_bytes=99
)
MESSAGES = (RegisterRequest, RegisterAnswer, CachedReport, NodeHeartbeat, NodeHeartbeatAnswer)

SAMPLES = [
    RegisterRequest(node_id="n0", location="grpc://h:1", pid=7, cache_dir="/c", capacity_bytes=5),
    RegisterRequest(node_id="n1", location="grpc://h:2", slot=1),
    RegisterAnswer(
        snapshot_id=12,
        metadata_location="s3://b/m.json",
        io_properties={"s3.region": "x"},
        row_filter="a > 1",
        columns=("a", "b"),
        plans=(PLAN,),
        assigned=(0,),
    ),
    RegisterAnswer(snapshot_id=None, metadata_location="/m.json"),
    CachedReport(node_id="n0", slice_id=3, num_rows=10, nbytes=400),
    NodeHeartbeat(node_id="n0", stats={"rows_served": 5, "errors": 0}),
    NodeHeartbeatAnswer(stop=False, assign=(4, 5)),
    NodeHeartbeatAnswer(stop=True),
    RegisterAnswer(
        snapshot_id=13,
        metadata_location="/m2.json",
        plans=(PLAN,),
        sources=(
            SnapshotSource(snapshot_id=12, metadata_location="/m.json", slices=(0,)),
            SnapshotSource(snapshot_id=13, metadata_location="/m2.json", slices=()),
        ),
    ),
    CachedReport(node_id="n0", slice_id=3, num_rows=10, nbytes=400, storage_bytes=77),
    NodeHeartbeatAnswer(
        assign=(0,),
        plans=(PLAN,),
        sources=(SnapshotSource(snapshot_id=13, metadata_location="/m2.json", slices=(0,)),),
        drop=(2, 3),
        retired=(12, -1),
    ),
    NodeHeartbeat(node_id="n0", stats={}, jobs=("a", "b/c")),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(message):
    assert type(message).from_json(message.to_json()) == message


def test_the_wire_fields_are_those_of_protocol_md():
    register = json.loads(SAMPLES[0].to_json())
    assert set(register) == {"node_id", "location", "pid", "cache_dir", "capacity_bytes"}
    assert json.loads(SAMPLES[1].to_json())["slot"] == 1  # sent only when chosen
    assert set(json.loads(SAMPLES[2].to_json())) == {
        "snapshot_id",
        "metadata_location",
        "io_properties",
        "row_filter",
        "columns",
        "plans",
        "assigned",
    }
    assert json.loads(SAMPLES[4].to_json()) == {
        "node_id": "n0",
        "slice_id": 3,
        "num_rows": 10,
        "nbytes": 400,
        "storage_bytes": 0,
    }
    assert set(json.loads(SAMPLES[5].to_json())) == {"node_id", "stats"}  # no jobs: left out
    assert json.loads(SAMPLES[-1].to_json())["jobs"] == ["a", "b/c"]
    assert json.loads(SAMPLES[6].to_json()) == {"stop": False, "assign": [4, 5]}
    # a refresh's fields: only when there is news (older nodes parse the rest)
    assert set(json.loads(SAMPLES[8].to_json())) == set(json.loads(SAMPLES[2].to_json())) | {
        "sources"
    }
    assert set(json.loads(SAMPLES[10].to_json())) == {
        "stop",
        "assign",
        "plans",
        "sources",
        "drop",
        "retired",
    }


def test_optional_fields_may_be_missing_and_unknown_ones_are_ignored():
    beat = NodeHeartbeat.from_json(b'{"node_id": "n0", "future": 1}')
    assert beat.stats == {}
    assert NodeHeartbeatAnswer.from_json(b'{"stop": false}') == NodeHeartbeatAnswer()
    register = RegisterRequest.from_json(b'{"node_id": "n0", "location": "grpc://h:1"}')
    assert register.slot is None and register.pid is None


def test_io_properties_stay_out_of_the_repr():
    answer = RegisterAnswer(
        snapshot_id=1, metadata_location="m", io_properties={"s3.secret-access-key": "sekrit"}
    )
    assert "sekrit" not in repr(answer)


@pytest.mark.parametrize(
    ("message", "body", "match"),
    [
        (RegisterRequest, {"location": "grpc://h:1"}, "node_id"),
        (RegisterRequest, {"node_id": "n", "location": ""}, "location"),
        (RegisterRequest, {"node_id": "n", "location": "l", "slot": -1}, "slot"),
        (RegisterRequest, {"node_id": "n", "location": "l", "pid": "7"}, "pid"),
        (RegisterRequest, {"node_id": "n", "location": "l", "cache_dir": 3}, "cache_dir"),
        (CachedReport, {"node_id": "n", "slice_id": 0, "num_rows": -1, "nbytes": 0}, "num_rows"),
        (CachedReport, {"node_id": "n", "slice_id": True, "num_rows": 1, "nbytes": 0}, "slice_id"),
        (NodeHeartbeat, {"node_id": "n", "stats": [1]}, "stats"),
        (NodeHeartbeat, {"node_id": "n", "stats": {"errors": "x"}}, "stats.errors"),
        (NodeHeartbeat, {"node_id": "n", "jobs": "a"}, "jobs"),
        (NodeHeartbeat, {"node_id": "n", "jobs": ["a", 3]}, r"jobs\[1\]"),
        (NodeHeartbeat, {"node_id": "n", "jobs": ["j"] * 1025}, "at most 1024"),
        (NodeHeartbeatAnswer, {"stop": "yes"}, "stop"),
        (NodeHeartbeatAnswer, {"assign": [1, "2"]}, r"assign\[1\]"),
        (RegisterAnswer, {"snapshot_id": 1}, "metadata_location"),
        (RegisterAnswer, {"metadata_location": "m", "snapshot_id": "1"}, "snapshot_id"),
        (RegisterAnswer, {"metadata_location": "m", "plans": [{"slice_id": 0}]}, r"plans\[0\]"),
        (RegisterAnswer, {"metadata_location": "m", "io_properties": {"k": 1}}, "io_properties"),
        (RegisterAnswer, {"metadata_location": "m", "columns": "a"}, "columns"),
    ],
)
def test_bad_messages_name_the_field(message, body, match):
    with pytest.raises(SpecError, match=match):
        message.from_json(json.dumps(body).encode())


def test_bad_values_fail_at_construction_too():
    with pytest.raises(SpecError, match="nbytes"):
        CachedReport(node_id="n", slice_id=0, num_rows=1, nbytes=-5)


def _json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError)
        return False


@settings(deadline=None)
@given(st.binary(max_size=200) | st.sampled_from([b"[]", b"1", b'"x"', b"null", b"{"]))
def test_random_bytes_are_refused_unless_a_json_object(raw):
    """Only SpecError escapes; and bytes that are not a JSON object are always refused."""
    for message in MESSAGES:
        if not _json_object(raw):
            with pytest.raises(SpecError):
                message.from_json(raw)
            continue
        with contextlib.suppress(SpecError):
            message.from_json(raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@settings(deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "node_id",
                "location",
                "pid",
                "slot",
                "cache_dir",
                "slice_id",
                "num_rows",
                "nbytes",
                "stats",
                "stop",
                "assign",
                "snapshot_id",
                "metadata_location",
                "io_properties",
                "columns",
                "plans",
                "assigned",
            ]
        ),
        _JSON,
    )
)
def test_random_json_only_ever_raises_spec_error(body):
    raw = json.dumps(body).encode()
    for message in MESSAGES:
        with contextlib.suppress(SpecError):
            message.from_json(raw)


# Values of the wrong type for a field, by the type of its valid value (truthy, so that a
# parser's "missing or empty means default" cannot take them for a missing field).
_WRONG = {
    str: [7, ["s"], {"s": 1}, True],
    int: ["7", 1.5, True, [1]],
    bool: ["yes", 1],
    list: ["x", 7, {"a": 1}],
    dict: [[1], "x", 7],
}


@settings(deadline=None)
@given(st.data())
def test_a_valid_message_is_kept_and_one_wrong_field_is_refused(data):
    """A parser that accepted everything (or refused everything) fails here."""
    message = data.draw(st.sampled_from(SAMPLES))
    wire = json.loads(message.to_json())
    assert type(message).from_json(json.dumps(wire).encode()) == message
    key = data.draw(st.sampled_from(sorted(k for k, v in wire.items() if v is not None)))
    bad = data.draw(st.sampled_from(_WRONG[type(wire[key])]))
    with pytest.raises(SpecError):
        type(message).from_json(json.dumps({**wire, key: bad}).encode())
