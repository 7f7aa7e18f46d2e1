"""The demo's model side (examples.flights_demo.model): features, the held-out split, AUC."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from examples.flights_demo.model import bucket, encode, is_holdout, roc_auc, weekday_2013


@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=60))
def test_auc_of_negated_scores_is_one_minus_auc(pairs):
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], dtype=float)
    auc = roc_auc(labels, scores)
    if labels.all() or not labels.any():
        assert np.isnan(auc)
    else:
        assert 0.0 <= auc <= 1.0
        assert roc_auc(labels, -scores) == pytest.approx(1.0 - auc)


def test_auc_is_one_for_a_perfect_ranking_and_a_half_for_ties():
    labels = np.array([False, False, True, True])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.zeros(4)) == 0.5


def test_weekday_matches_the_calendar_for_every_day_of_2013():
    days = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    month = torch.tensor([d.month for d in days], dtype=torch.int32)
    day = torch.tensor([d.day for d in days], dtype=torch.int32)
    assert weekday_2013(month, day).tolist() == [d.weekday() for d in days]


def test_holdout_is_whole_days_seven_fourteen_twenty_one_twenty_eight():
    day = torch.arange(1, 32)
    assert day[is_holdout(day)].tolist() == [7, 14, 21, 28]


def test_buckets_are_stable_and_in_range():
    assert bucket("JFK", 8) == bucket("JFK", 8)
    assert all(0 <= bucket(code, 256) < 256 for code in ("IAH", "ORD", "SFO", ""))


def test_encode_makes_model_inputs_from_a_feeder_batch():
    batch = {
        "month": torch.tensor([1, 12], dtype=torch.int32),
        "day": torch.tensor([1, 31], dtype=torch.int32),
        "sched_dep_time": torch.tensor([515, 2359], dtype=torch.int32),
        "sched_arr_time": torch.tensor([819, 5], dtype=torch.int32),
        "hour": torch.tensor([5, 23], dtype=torch.int32),
        "carrier": ["UA", "B6"],
        "origin": ["EWR", "JFK"],
        "dest": ["IAH", "BQN"],
        "distance": torch.tensor([1400.0, 1576.0], dtype=torch.float64),
        "is_late": torch.tensor([False, True]),
    }
    inputs = encode(batch)
    assert inputs["dense"].shape == (2, 8) and inputs["dense"].dtype == torch.float32
    assert torch.isfinite(inputs["dense"]).all()
    assert inputs["cats"].shape == (2, 4)
    assert inputs["cats"][:, 3].tolist() == [1, 1]  # 2013-01-01 and 2013-12-31: Tuesdays
    assert inputs["y"].tolist() == [0.0, 1.0]
