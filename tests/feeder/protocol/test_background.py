"""Iterating on a thread of its own: order, errors in place, bounded, stopped by close."""

from __future__ import annotations

import threading

import pytest

from feeder.protocol.background import _Buffer, ahead


def test_items_come_in_order_and_an_error_where_its_item_would_have_come():
    def items():
        yield from range(5)
        raise ValueError("the sixth")

    got = []
    with pytest.raises(ValueError, match="the sixth"):
        for item in ahead(items(), depth=2, name="t"):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_the_thread_runs_at_most_depth_items_ahead_and_stops_when_closed():
    produced: list[int] = []
    closed = threading.Event()
    wanted = threading.Event()

    def items():
        try:
            for i in range(1000):
                produced.append(i)
                if i == 3:
                    wanted.set()
                yield i
        finally:
            closed.set()

    stream = ahead(items(), depth=2, name="t")
    assert next(stream) == 0
    assert wanted.wait(10)  # items 1 and 2 buffered, item 3 made and waiting for room
    assert len(produced) == 4
    stream.close()
    assert closed.wait(10)  # the source was closed on the thread, at its next item
    assert len(produced) == 4


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        ahead(iter([]), depth=0, name="t")


def test_a_weighted_buffer_holds_at_most_depth_in_weight_but_always_takes_one_item():
    buffer = _Buffer(5)
    assert buffer.room(10)  # an empty buffer takes any item (else a big one would hang)
    assert buffer.put("a", 2) and buffer.put("b", 2)
    assert buffer.room(1) and not buffer.room(2)  # 4 queued: 5 is the bound
    assert buffer.get() == "a"
    assert buffer.room(3) and not buffer.room(4)
    assert buffer.put("c", 3) and buffer.get() == "b" and buffer.get() == "c"
    assert buffer.room(6)


def test_weighted_items_come_in_order_with_their_errors():
    def items():
        yield from ([1] * n for n in (3, 1, 4))
        raise ValueError("after three")

    got = []
    with pytest.raises(ValueError, match="after three"):
        for item in ahead(items(), depth=4, name="t", weight=len):
            got.append(len(item))
    assert got == [3, 1, 4]
