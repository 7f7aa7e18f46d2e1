"""Consumer request parsing (pure): round trips, and only SpecError for garbage."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.messages import LeaseRequest, StaticRequest
from feeder.protocol.shuffle_kind import parse_shuffle
from jobs.errors import SpecError


def test_static_request_round_trips():
    request = StaticRequest(
        job="j",
        epoch=3,
        seed=2**63,
        shuffle=False,
        columns=("a", "b"),
        rank=1,
        world_size=4,
        drop_last=False,
        worker=2,
        num_workers=3,
        unit=64,
        skip_rows=10,
    )
    assert StaticRequest.from_command(request.to_command()) == request


def test_lease_request_round_trips():
    request = LeaseRequest(job="j", epoch=1, seed=5, columns=None, consumer="c1")
    assert LeaseRequest.from_body(request.to_body()) == request


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"world_size": 0}, "world_size"),
        ({"worker": 1}, "worker"),
        ({"unit": 0}, "unit"),
        ({"epoch": -1}, "epoch"),
        ({"seed": 2**64}, "seed"),
        ({"shuffle": "yes"}, "shuffle"),
        ({"columns": []}, "columns"),
        ({"columns": ["a", "a"]}, "duplicate"),
        ({"job": ""}, "job"),
        ({"v": 2}, "version"),
        ({"bogus": 1}, "unknown"),
    ],
)
def test_bad_static_commands_name_the_field(body, match):
    with pytest.raises(SpecError, match=match):
        StaticRequest.from_command(json.dumps(body).encode())


def test_rank_out_of_range_fails_at_construction():
    with pytest.raises(SpecError, match="rank"):
        StaticRequest(rank=3, world_size=2)


# An oracle written from PROTOCOL.md, independent of the parser: which bodies are valid.
_INT_RANGES = {
    "epoch": (0, 2**32 - 1),
    "seed": (0, 2**64),
    "rank": (0, 2**31),
    "world_size": (1, 2**31),
    "unit": (1, 2**31),
}
_LEASE_FIELDS = {"job", "epoch", "seed", "shuffle", "columns", "consumer"}


_JOB_FIRST = set(string.ascii_letters + string.digits)
_JOB_REST = _JOB_FIRST | set("._:/@+=-")


def _field_ok(key: str, value: object) -> bool:
    if key == "job":  # PROTOCOL.md: 1 to 128 of [A-Za-z0-9._:/@+=-], not starting with punctuation
        return (
            isinstance(value, str)
            and 0 < len(value) <= 128
            and value[0] in _JOB_FIRST
            and set(value) <= _JOB_REST
        )
    if key == "consumer":
        return isinstance(value, str) and 0 < len(value) <= 256
    if key == "shuffle":
        return isinstance(value, bool) or value in ("off", "slice", "mix")
    if key == "columns":
        return value is None or (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(c, str) and c for c in value)
            and len(set(value)) == len(value)
        )
    lo, hi = _INT_RANGES[key]
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value < hi


def _static_ok(body: dict) -> bool:
    if "consumer" in body or not all(_field_ok(k, v) for k, v in body.items()):
        return False
    return body.get("rank", 0) < body.get("world_size", 1)


def _lease_ok(body: dict) -> bool:
    # a lease ignores the static-only fields
    return "consumer" in body and all(
        _field_ok(k, v) for k, v in body.items() if k in _LEASE_FIELDS
    )


def _check(raw: bytes, body: object) -> None:
    """Each parser accepts exactly the bodies the oracle calls valid, keeping their values."""
    for parse, ok in (
        (StaticRequest.from_command, _static_ok),
        (LeaseRequest.from_body, _lease_ok),
    ):
        if not isinstance(body, dict) or not ok(body):
            with pytest.raises(SpecError):
                parse(raw)
            continue
        request = parse(raw)
        for key, value in body.items():
            if key in _LEASE_FIELDS or isinstance(request, StaticRequest):
                got = getattr(request, key)
                if key == "shuffle":  # the wire's true/false/name, held as a Shuffle
                    assert got is parse_shuffle(value)
                    continue
                assert (list(got) if key == "columns" and got is not None else got) == value


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_unless_a_valid_json_object(raw):
    try:
        body = json.loads(raw)
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError)
        body = None
    _check(raw, body)


@settings(deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["job", "epoch", "seed", "rank", "world_size", "columns", "unit", "consumer", "shuffle"]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.text(max_size=3), max_size=3),
        ),
    )
)
def test_random_json_is_accepted_exactly_when_valid(body):
    _check(json.dumps(body).encode(), body)


# Known-invalid values per field: one of them in an otherwise valid request must be refused.
_BAD = {
    "job": ["", "-lead", "has space", "x" * 129, 7, None, ["j"]],
    "epoch": [-1, 2**32 - 1, 1.5, "1", True, None],
    "seed": [-1, 2**64, 2.0, "7", False, None],
    "shuffle": ["random", "MIX", 1, 0, None, []],
    "columns": [[], ["a", "a"], [""], [1], "a", {}],
    "consumer": ["", "c" * 257, 3, None],
    "rank": [-1, 2**31, "0", None],
    "world_size": [0, -2, 2**31, "2", None],
    "unit": [0, -1, 2**31, "64", None],
}
_names = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
_COMMON = {
    "job": _names,
    "epoch": st.integers(0, 2**32 - 2),
    "seed": st.integers(0, 2**64 - 1),
    "shuffle": st.sampled_from([True, False, "off", "slice", "mix"]),
    "columns": st.none() | st.lists(_names, min_size=1, max_size=4, unique=True),
}


@st.composite
def _valid_static(draw: st.DrawFn) -> dict:
    body = draw(st.fixed_dictionaries({}, optional={**_COMMON, "unit": st.integers(1, 2**31 - 1)}))
    if draw(st.booleans()):
        body["world_size"] = draw(st.integers(1, 2**31 - 1))
        body["rank"] = draw(st.integers(0, body["world_size"] - 1))
    return body


_valid_lease = st.fixed_dictionaries({"consumer": _names}, optional=_COMMON)


@settings(deadline=None)
@given(st.data())
def test_valid_requests_are_kept_and_one_known_bad_field_is_refused(data):
    """Generated both ways, independently of the parsers: every valid request parses with
    its values, and the same request with one field set to a known-bad value is refused
    (a parser that accepted everything, or one that refused everything, fails here)."""
    for parse, valid, ok in (
        (StaticRequest.from_command, _valid_static(), _static_ok),
        (LeaseRequest.from_body, _valid_lease, _lease_ok),
    ):
        body = data.draw(valid)
        assert ok(body)  # the generator and the oracle agree: _check expects it kept
        _check(json.dumps(body).encode(), body)
        fields = sorted(_BAD if parse is StaticRequest.from_command else _LEASE_FIELDS)
        key = data.draw(st.sampled_from(fields))
        bad = {**body, key: data.draw(st.sampled_from(_BAD[key]))}
        with pytest.raises(SpecError):
            parse(json.dumps(bad).encode())


def test_the_oracle_accepts_and_refuses_both_ways():
    """The fuzzers above see both outcomes (guards against an oracle that refuses all)."""
    _check(
        b'{"job":"j","epoch":1,"rank":1,"world_size":2}',
        {"job": "j", "epoch": 1, "rank": 1, "world_size": 2},
    )
    assert _static_ok({"rank": 1, "world_size": 2}) and not _static_ok({"rank": 2, "world_size": 2})
    assert _lease_ok({"consumer": "c", "rank": 9}) and not _lease_ok({"consumer": ""})


@pytest.mark.parametrize("shuffle", [True, False, "slice", "mix", "off"])
def test_shuffle_round_trips_as_an_enum_with_the_mix_knobs(shuffle):
    from feeder.protocol.mix import MixParams
    from feeder.protocol.shuffle_kind import Shuffle, parse_shuffle

    mix = MixParams(block_rows=64, window_rows=4096)
    static = StaticRequest(shuffle=shuffle, mix=mix)
    lease = LeaseRequest(shuffle=shuffle, mix=mix, consumer="c")
    assert static.shuffle is parse_shuffle(shuffle)
    again = StaticRequest.from_command(static.to_command())
    assert again.shuffle is static.shuffle
    assert LeaseRequest.from_body(lease.to_body()).shuffle is static.shuffle
    if static.shuffle is Shuffle.MIX:  # the knobs only travel (and only matter) with MIX
        assert again == static
        assert LeaseRequest.from_body(lease.to_body()) == lease


def test_old_boolean_commands_still_parse_and_bad_knobs_are_refused():
    from feeder.protocol.shuffle_kind import Shuffle

    assert StaticRequest.from_command(b'{"shuffle": true}').shuffle is Shuffle.MIX
    assert StaticRequest.from_command(b'{"shuffle": false}').shuffle is Shuffle.OFF
    for bad in (
        b'{"shuffle": "random"}',
        b'{"block_rows": 0}',
        b'{"block_rows": 9, "window_rows": 8}',
    ):
        with pytest.raises(SpecError):
            StaticRequest.from_command(bad)
