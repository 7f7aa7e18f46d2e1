"""Consumer request parsing (pure): round trips, and only SpecError for garbage."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.messages import LeaseRequest, StaticRequest
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


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_spec_error(raw):
    for parse in (StaticRequest.from_command, LeaseRequest.from_body):
        with contextlib.suppress(SpecError):
            parse(raw)


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
def test_random_json_only_ever_raises_spec_error(body):
    raw = json.dumps(body).encode()
    for parse in (StaticRequest.from_command, LeaseRequest.from_body):
        with contextlib.suppress(SpecError):
            parse(raw)


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
