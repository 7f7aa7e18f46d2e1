"""The chunking hint: where a data node cuts batches so a consumer's batches do not straddle."""

from __future__ import annotations

import itertools

import pytest

from feeder.protocol.chunking import CHUNKS_HEADER, MAX_UNIT, Chunking, parse_chunking
from jobs.errors import FeederError


@pytest.mark.parametrize(("position", "unit", "lead"), [(0, 16, 0), (5, 16, 11), (32, 16, 0)])
def test_at_names_the_rows_missing_to_the_next_boundary(position, unit, lead):
    assert Chunking.at(position, unit) == Chunking(lead=lead, unit=unit)


@pytest.mark.parametrize(
    ("rows", "max_rows", "lead", "unit"),
    list(itertools.product([0, 1, 7, 100, 1000], [1, 8, 64], [0, 3], [4, 5, 16])),
)
def test_sizes_cover_the_rows_and_every_cut_after_the_lead_is_on_the_grid(
    rows, max_rows, lead, unit
):
    chunking = Chunking(lead=lead % unit, unit=unit)
    sizes = chunking.sizes(rows, max_rows)
    assert sum(sizes) == rows and all(s > 0 for s in sizes)
    if unit > max_rows:  # the consumer's batches span several pieces anyway: plain pieces
        assert all(s <= max_rows for s in sizes)
        return
    cuts = list(itertools.accumulate(sizes))[:-1]  # the end of the range is not a cut
    assert all((c - chunking.lead) % unit == 0 for c in cuts), sizes
    assert all(s <= max(max_rows, chunking.lead) for s in sizes)


def test_without_a_hint_pieces_are_max_rows_from_the_start():
    assert Chunking().sizes(10, 4) == [4, 4, 2]
    assert parse_chunking(None) == Chunking()


def test_header_value_round_trips():
    chunking = Chunking(lead=12928, unit=16384)
    assert parse_chunking(chunking.header_value()) == chunking


@pytest.mark.parametrize(
    "value", ["", "3", "1,2,3", "a,4", "-1,4", "4,4", "0,0", " 1,4", "1,²", "1," + "9" * 40]
)
def test_a_malformed_header_is_a_feeder_error_naming_the_header(value):
    with pytest.raises(FeederError, match=CHUNKS_HEADER):
        parse_chunking(value)


def test_unit_is_bounded():
    Chunking(lead=0, unit=MAX_UNIT)
    with pytest.raises(FeederError, match="unit"):
        Chunking(lead=0, unit=MAX_UNIT + 1)
