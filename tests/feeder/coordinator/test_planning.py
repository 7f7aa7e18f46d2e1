"""Slice planning: the pure row-group cutter, and plans of a real small Iceberg table."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeder.coordinator.planning import cut_row_groups, plan_slices
from feeder.protocol.slice_plan import SlicePlan
from jobs.errors import FeederError
from tests.feeder.tables import make_table, sample_arrow


@given(st.lists(st.integers(0, 1000), max_size=40), st.integers(1, 3000))
def test_cut_row_groups_covers_each_group_once_within_target(sizes, target):
    runs = cut_row_groups(sizes, target)
    assert [i for run in runs for i in run] == list(range(len(sizes)))
    for run in runs:
        assert run
        assert sum(sizes[i] for i in run) <= target or len(run) == 1
    # greedy: a run could not have taken the next group without passing the target
    for run, nxt in itertools.pairwise(runs):
        assert sum(sizes[i] for i in run) + sizes[nxt[0]] > target


def test_cut_row_groups_rejects_bad_target():
    with pytest.raises(ValueError):
        cut_row_groups([1], 0)


def test_slice_plan_json_round_trip_and_validation():
    plan = SlicePlan(
        slice_id=2,
        file_path="file:///x.parquet",
        row_groups=(3, 4),
        estimated_rows=10,
        estimated_bytes=99,
        has_deletes=False,
    )
    assert SlicePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    for bad in (
        {},
        {**plan.to_dict(), "slice_id": -1},
        {**plan.to_dict(), "row_groups": "ab"},
        {**plan.to_dict(), "has_deletes": 1},
        None,
    ):
        with pytest.raises(FeederError):
            SlicePlan.from_dict(bad)


def test_plan_covers_every_row_group_of_every_file(catalog):
    table = make_table(catalog, files=2, rows_per_file=3000, row_group_rows=500)
    plans = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=30_000)
    assert [p.slice_id for p in plans] == list(range(len(plans)))
    files = sorted({p.file_path for p in plans})
    assert len(files) == 2
    for path in files:
        groups = [g for p in plans if p.file_path == path for g in p.row_groups]
        assert groups == list(range(6))
    assert sum(p.estimated_rows for p in plans) == 6000
    assert all(1 <= len(p.row_groups) <= 2 for p in plans)
    # one huge target: one slice per file
    big = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=1 << 30)
    assert len(big) == 2 and all(p.row_groups == tuple(range(6)) for p in big)


def test_projection_shrinks_estimates_and_filter_prunes_files(catalog):
    table = make_table(catalog, files=2, rows_per_file=3000, row_group_rows=3000)
    full = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=1 << 30)
    narrow = plan_slices(
        table, snapshot_id=None, row_filter=None, columns=["id"], slice_bytes=1 << 30
    )
    assert sum(p.estimated_bytes for p in narrow) < sum(p.estimated_bytes for p in full) / 2
    # file 0 holds ids 0..2999, file 1 3000..5999: the stats prune file 0
    pruned = plan_slices(
        table, snapshot_id=None, row_filter="id >= 4000", columns=None, slice_bytes=1 << 30
    )
    assert len(pruned) == 1


def test_plan_is_pinned_to_the_snapshot(catalog):
    table = make_table(catalog, files=1, rows_per_file=1000, row_group_rows=1000)
    first = table.current_snapshot().snapshot_id
    table.append(sample_arrow(500, start=10_000))
    old = plan_slices(table, snapshot_id=first, row_filter=None, columns=None, slice_bytes=1 << 30)
    new = plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=1 << 30)
    assert sum(p.estimated_rows for p in old) == 1000
    assert sum(p.estimated_rows for p in new) == 1500


def test_empty_table_has_no_slices(catalog):
    table = catalog.create_table("test.empty", schema=sample_arrow(1).schema)
    assert (
        plan_slices(table, snapshot_id=None, row_filter=None, columns=None, slice_bytes=100) == []
    )
