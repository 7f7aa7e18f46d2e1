"""examples.flights_demo.config: a bad setting fails at construction, naming the field."""

from __future__ import annotations

import pytest

from examples.flights_demo.config import DemoConfig
from jobs.errors import SpecError


@pytest.mark.parametrize("field", ["epochs", "sample_every", "batch_size", "nodes"])
def test_config_rejects_values_below_one(field):
    with pytest.raises(SpecError, match=field):
        DemoConfig(**{field: 0})


def test_config_rejects_a_run_id_unusable_in_paths():
    with pytest.raises(SpecError, match="run id"):
        DemoConfig(run_id="../escape")
