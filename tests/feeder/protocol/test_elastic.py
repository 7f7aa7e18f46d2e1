"""Elastic resume as a pure function: delivered + remaining = the epoch, new shape exactly once."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.elastic import Progress, delivered_spans, elastic_spans, remaining_spans
from feeder.protocol.mix import consumer_spans
from feeder.protocol.shuffle import SliceRange, position_ranges, split_bounds
from jobs.errors import SpecError


def _positions(spans):
    return [p for a, b in spans for p in range(a, b)]


@st.composite
def _case(draw):
    total = draw(st.integers(0, 300))
    world = draw(st.integers(1, 4))
    workers = draw(st.integers(1, 3))
    unit = draw(st.integers(1, 20))
    drop_last = draw(st.booleans())
    length = total // world if drop_last else -(-total // world)
    delivered = []
    for w in range(workers):
        lo, hi = split_bounds(length, part=w, parts=workers, unit=unit)
        delivered.append(draw(st.integers(0, hi - lo)))
    progress = Progress(
        world_size=world,
        num_workers=workers,
        unit=unit,
        drop_last=drop_last,
        delivered=tuple(delivered),
    )
    return total, progress


@settings(max_examples=300, deadline=None)
@given(
    _case(),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 20),
    st.booleans(),
)
def test_old_delivered_plus_new_shape_is_every_served_row_once(case, world, workers, unit, drop):
    total, progress = case
    old = Counter()
    for rank in range(progress.world_size):
        for w, count in enumerate(progress.delivered):
            spans = consumer_spans(
                total,
                rank=rank,
                world_size=progress.world_size,
                drop_last=progress.drop_last,
                worker=w,
                num_workers=progress.num_workers,
                unit=progress.unit,
            )
            old.update(_positions(spans)[:count])
    assert set(_positions(delivered_spans(total, progress))) == set(old)
    remaining = _positions(remaining_spans(total, progress))
    assert remaining == sorted(remaining)
    assert not set(remaining) & set(old)
    served = total // progress.world_size * progress.world_size if progress.drop_last else total
    assert set(remaining) | set(old) >= set(range(served))
    new = Counter()
    per_rank = []
    for rank in range(world):
        rows = 0
        for w in range(workers):
            got = _positions(
                elastic_spans(
                    total,
                    progress,
                    rank=rank,
                    world_size=world,
                    drop_last=drop,
                    worker=w,
                    num_workers=workers,
                    unit=unit,
                )
            )
            assert set(got) <= set(remaining)
            new.update(got)
            rows += len(got)
        per_rank.append(rows)
    assert len(set(per_rank)) <= 1, "ranks must get equal rows"
    r = len(remaining)
    if drop:  # only the last r % world remaining rows are left out
        assert sorted(new) == remaining[: r // world * world]
    else:  # every remaining row; padding repeats the first ones
        assert set(new) == set(remaining)
        assert sum(new.values()) == (-(-r // world) * world if r else 0)


def test_skip_leaves_out_the_first_rows_of_the_new_piece():
    progress = Progress(world_size=2, num_workers=2, unit=4, drop_last=False, delivered=(8, 4))
    full = elastic_spans(100, progress, rank=1, world_size=3, drop_last=False, unit=4)
    part = elastic_spans(100, progress, rank=1, world_size=3, drop_last=False, unit=4, skip=5)
    assert _positions(part) == _positions(full)[5:]


def test_positions_map_onto_slice_ranges_in_order():
    stream = [SliceRange(2, 0, 5), SliceRange(0, 0, 3)]
    assert position_ranges(stream, [(3, 6), (7, 8)]) == [
        SliceRange(2, 3, 5),
        SliceRange(0, 0, 1),
        SliceRange(0, 2, 3),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"world_size": 0}, r"resume_from.world_size: 0"),
        ({"unit": True}, r"resume_from.unit"),
        ({"drop_last": 1}, r"resume_from.drop_last"),
        ({"delivered": (1,)}, r"resume_from.delivered: .* list of 2"),
        ({"delivered": (1, -1)}, r"resume_from.delivered"),
    ],
)
def test_invalid_progress_names_the_field(fields, message):
    base = {"world_size": 2, "num_workers": 2, "unit": 4, "drop_last": False, "delivered": (0, 0)}
    with pytest.raises(SpecError, match=message):
        Progress(**{**base, **fields})


def test_a_count_beyond_the_piece_is_a_spec_error():
    progress = Progress(world_size=2, num_workers=1, unit=4, drop_last=False, delivered=(51,))
    with pytest.raises(SpecError, match=r"resume_from.delivered\[0\]: 51 rows exceed the 50"):
        remaining_spans(100, progress)


def test_static_request_carries_resume_from_and_stays_compatible():
    from feeder.protocol.messages import StaticRequest

    plain = StaticRequest(rank=1, world_size=3)
    assert b"resume_from" not in plain.to_command()  # older coordinators parse it
    assert StaticRequest.from_command(plain.to_command()) == plain
    progress = Progress(world_size=2, num_workers=2, unit=4, drop_last=False, delivered=(8, 4))
    elastic = StaticRequest(rank=1, world_size=3, unit=4, resume_from=progress)
    assert StaticRequest.from_command(elastic.to_command()) == elastic


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], r"resume_from: \[1\] must be null or an object"),
        ({"world_size": 2}, "resume_from: .* must be null or an object with exactly"),
        (
            {"world_size": 2, "num_workers": 1, "unit": 0, "drop_last": False, "delivered": [1]},
            "resume_from.unit: 0",
        ),
        (
            {"world_size": 2, "num_workers": 1, "unit": 1, "drop_last": False, "delivered": [-1]},
            "resume_from.delivered",
        ),
    ],
)
def test_a_bad_resume_from_on_the_wire_names_the_field(value, message):
    import json

    from feeder.protocol.messages import StaticRequest

    raw = json.dumps({"v": 1, "resume_from": value}).encode()
    with pytest.raises(SpecError, match=message):
        StaticRequest.from_command(raw)


def test_dynamic_reads_refuse_resume_from():
    from feeder.client.request import ReadRequest

    progress = Progress(world_size=1, num_workers=1, unit=1, drop_last=False, delivered=(1,))
    with pytest.raises(SpecError, match="resume_from: elastic resume is for static mode"):
        ReadRequest(mode="dynamic", resume_from=progress)
