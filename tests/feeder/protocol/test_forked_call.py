"""call_forked: the answer or the error of a call made in a forked child, and a bound on waiting."""

from __future__ import annotations

import os
import time

import pytest

from feeder.protocol.forked_call import call_forked
from jobs.errors import FeederError, SpecError


def test_returns_what_the_child_computed_in_its_own_process():
    parent = os.getpid()
    pid, value = call_forked(lambda: (os.getpid(), sum(range(10))), deadline=60, what="sum")
    assert value == 45
    assert pid != parent


def test_reraises_the_childs_error_with_its_type_and_message():
    def fail() -> None:
        raise SpecError("columns: 'nope' is not served; served: id, x")

    with pytest.raises(SpecError, match="'nope' is not served"):
        call_forked(fail, deadline=60, what="plan")


def test_an_error_that_does_not_unpickle_comes_back_as_a_feeder_error_with_its_message():
    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"odd {a} {b}")

    def fail() -> None:
        raise Odd(1, 2)

    with pytest.raises(FeederError, match="Odd: odd 1 2"):
        call_forked(fail, deadline=60, what="plan")


def test_a_child_that_dies_without_answering_is_reported():
    with pytest.raises(FeederError, match="plan: the helper process died without an answer"):
        call_forked(lambda: os._exit(9), deadline=60, what="plan")


def test_a_child_past_its_deadline_is_killed_and_reported():
    start = time.monotonic()
    with pytest.raises(FeederError, match=r"plan: no answer from the feeder within 1 s"):
        call_forked(lambda: time.sleep(120), deadline=1, what="plan")
    assert time.monotonic() - start < 60  # killed, not waited for
