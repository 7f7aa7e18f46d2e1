"""ReadRequest: one validated request object behind FeederClient.stream and plan (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from feeder.client.request import ReadRequest
from feeder.protocol.messages import StaticRequest
from feeder.protocol.modes import Mode
from feeder.protocol.shuffle_kind import Shuffle
from jobs.errors import SpecError


def test_keywords_build_the_same_request_as_the_object():
    built = ReadRequest.build(3, None, {"rank": 1, "world_size": 2, "mode": "static", "seed": 9})
    assert built == ReadRequest(epoch=3, rank=1, world_size=2, seed=9)
    assert built.mode is Mode.STATIC
    assert ReadRequest.build(None, None, {}) == ReadRequest()


def test_epoch_and_keywords_override_a_given_request():
    base = ReadRequest(epoch=1, seed=4, columns=["a", "b"])
    assert base.columns == ("a", "b")
    again = ReadRequest.build(2, base, {"shuffle": False})
    assert (again.epoch, again.seed, again.shuffle) == (2, 4, Shuffle.OFF)
    assert again.columns == ("a", "b")
    assert ReadRequest.build(None, base, {}) is base


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rank": 2, "world_size": 2}, r"rank: 2 must be in \[0, world_size=2\)"),
        ({"mode": "sometimes"}, "mode: 'sometimes' is not one of static, dynamic"),
        ({"columns": "id"}, "columns: give a list of column names, not one string"),
        ({"columns": ["a", "a"]}, "columns: duplicate names"),
        ({"epoch": -1}, "epoch: -1"),
        ({"unit": 0}, "unit: 0"),
        ({"worker": 2, "num_workers": 2}, "worker: 2"),
        ({"mode": "dynamic", "skip_rows": 5}, "skip_rows: dynamic mode cannot skip rows"),
        ({"mode": "dynamic", "unit": 0}, "unit: 0"),
    ],
)
def test_an_invalid_field_fails_at_construction_naming_it(fields, message):
    with pytest.raises(SpecError, match=message):
        ReadRequest(**fields)
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(ReadRequest(), **fields)


def test_dynamic_mode_does_not_check_the_static_split():
    # in dynamic mode rank and worker only name the consumer, as before the request object
    request = ReadRequest(mode=Mode.DYNAMIC, rank=3, world_size=1)
    lease = request.for_job("train").lease("c1")
    assert (lease.job, lease.consumer, lease.epoch) == ("train", "c1", 0)
    with pytest.raises(SpecError, match="static mode only"):
        request.static()


def test_static_is_the_wire_request_of_the_same_fields():
    request = ReadRequest(epoch=5, rank=1, world_size=3, unit=64, skip_rows=128).for_job("j")
    wire = request.static()
    assert type(wire) is StaticRequest
    assert StaticRequest.from_command(wire.to_command()) == wire
    assert (wire.job, wire.epoch, wire.rank, wire.unit, wire.skip_rows) == ("j", 5, 1, 64, 128)


def test_an_unknown_field_or_another_job_is_refused():
    with pytest.raises(TypeError, match=r"unknown read request field\(s\) \['rnak'\]"):
        ReadRequest.build(0, None, {"rnak": 1})
    with pytest.raises(TypeError, match=r"unknown read request field\(s\) \['job'\]"):
        ReadRequest.build(0, None, {"job": "other"})
    with pytest.raises(SpecError, match="job: the request's 'a' is not the client's job 'b'"):
        ReadRequest(job="a").for_job("b")
    assert ReadRequest().for_job("b").job == "b"
