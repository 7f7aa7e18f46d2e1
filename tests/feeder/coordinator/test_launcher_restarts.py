"""The launcher's restart limit on real Spark (local mode): losses in a row, reset when healthy.

A module of its own: test_launcher.py's module feeder holds every task slot while it runs.
"""

from __future__ import annotations

import pytest

from feeder.coordinator.launcher import NodeTaskSpec


@pytest.mark.parametrize(("healthy_seconds", "expected_losses"), [(3600.0, 3), (0.0, 6)])
def test_the_restart_limit_counts_losses_in_a_row_and_resets_after_a_healthy_run(
    spark, healthy_seconds, expected_losses
):
    """Nodes that cannot reach a coordinator fail at once; max_restarts=2 allows 3 runs in a
    row, unless each run counts as healthy (healthy_seconds=0): then the slot restarts on."""
    import threading

    from feeder.coordinator.launcher import NodeLauncher
    from feeder.protocol.tickets import new_key

    losses: list[str] = []
    enough = threading.Event()

    def lost(node_id: str, reason: str) -> None:
        losses.append(node_id)
        if len(losses) >= expected_losses:
            enough.set()

    spec = NodeTaskSpec(coordinator_endpoint="grpc://127.0.0.1:9", ticket_key=new_key())
    launcher = NodeLauncher(
        spark.sparkContext,
        spec,
        nodes=1,
        on_node_lost=lost,
        max_restarts=2,
        healthy_seconds=healthy_seconds,
    )
    launcher.start()
    try:
        assert enough.wait(180), losses
    finally:
        launcher.stop(timeout=30)
    assert losses[:3] == [
        f"{launcher.session}-n0",
        f"{launcher.session}-n0r1",
        f"{launcher.session}-n0r2",
    ]
    if healthy_seconds:
        assert len(losses) == 3 and not launcher._threads  # given up after 3 in a row
