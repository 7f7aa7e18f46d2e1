"""DataWait: the time a training loop waits for each batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feeder.torch.data_wait import DataWait


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _source(clock: _Clock, delays: list[float]) -> Iterator[int]:
    """A data source whose i-th batch takes delays[i] seconds to arrive."""
    for i, delay in enumerate(delays):
        clock.now += delay
        yield i


def test_waits_are_measured_from_the_ask_to_the_arrival_and_the_first_apart():
    clock = _Clock()
    waits = DataWait(clock=clock)
    seen = []
    for batch in waits.wrap(_source(clock, [2.0, 0.01, 0.0, 0.5])):
        seen.append(batch)
        clock.now += 0.1  # the training step
    assert seen == [0, 1, 2, 3]
    summary = waits.summary()
    assert summary.steps == 4
    assert summary.first_wait == pytest.approx(2.0)
    assert summary.wait == pytest.approx(0.51)
    assert summary.wall == pytest.approx(0.3 + 0.51)  # first arrival .. last arrival
    assert summary.wait_fraction == pytest.approx(0.51 / 0.81)
    assert summary.p50 == pytest.approx(0.01)
    assert summary.p99 == pytest.approx(0.5)
    assert "4 steps: waited 0.510 s" in str(summary)


def test_an_empty_loop_reports_zeros():
    summary = DataWait().summary()
    assert (summary.steps, summary.wait, summary.wall, summary.wait_fraction) == (0, 0, 0, 0)


def test_a_real_feeder_loop_is_timed_and_observed_in_prometheus(catalog, tmp_path):
    prom = pytest.importorskip("prometheus_client")  # the metrics extra, in the dev env
    from feeder.torch import FeederDataset
    from tests.feeder.local_feeder import local_feeder
    from tests.feeder.tables import make_table

    make_table(catalog, rows_per_file=1000)
    registry = prom.CollectorRegistry()
    waits = DataWait(prometheus_registry=registry)
    with local_feeder(catalog, cache_dir=tmp_path / "cache") as feed:
        ds = FeederDataset(feed.endpoint, batch_size=100, columns=["id"])
        rows = sum(len(batch["id"]) for batch in waits.wrap(ds))
        ds.close()
    summary = waits.summary()
    assert rows == 2000 and summary.steps == 20
    assert 0 <= summary.wait <= summary.wall
    assert 0 <= summary.p50 <= summary.p99
    assert registry.get_sample_value("icefeed_consumer_data_wait_seconds_count") == 20
