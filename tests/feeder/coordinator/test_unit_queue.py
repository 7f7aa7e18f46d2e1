"""UnitQueue: lease order, host order and the journal text agree after any takes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.coordinator.unit_queue import UnitQueue
from feeder.protocol.shuffle import SliceRange


def _home(unit: SliceRange) -> tuple[str, ...]:
    return (f"h{unit.slice_id % 3}",)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 12), st.lists(st.tuples(st.sampled_from(["pop", "push"]), st.integers(0, 3))))
def test_the_text_and_the_order_are_the_units_left_in_lease_order(n, steps):
    units = [SliceRange(i, 0, 10) for i in range(n)]
    queue = UnitQueue(units, _home)
    model = list(units)  # the queue in lease order
    pushed = 100
    for op, host in steps:
        if op == "push":
            unit = SliceRange(pushed, 0, 5)
            pushed += 1
            queue.push_front(unit)
            model.insert(0, unit)
        elif model:
            mine = [u for u in model if _home(u) == (f"h{host}",)]
            expected = mine[0] if mine else model[0]
            assert queue.pop(f"h{host}") == expected
            model.remove(expected)
        assert list(queue) == model
        assert json.loads(f"[{queue.text()}]") == [[u.slice_id, u.start, u.stop] for u in model]
    assert len(queue) == len(model)
