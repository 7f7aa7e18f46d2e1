"""Iterating on a thread of its own: order, errors in place, bounded, stopped by close."""

from __future__ import annotations

import threading

import pytest

from feeder.protocol.background import ahead


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
