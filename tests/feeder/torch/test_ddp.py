"""A real 2-process DDP run (torchrun, gloo on CPU) trained from a feeder for 2 epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.feeder.torch.torchrun import torchrun

ROWS = 4000
BATCH = 64


@pytest.mark.spark
@pytest.mark.slow
def test_two_process_ddp_sees_disjoint_rows_and_syncs_gradients(spark, catalog, icefeed_home):
    from feeder.coordinator.session import serve
    from tests.feeder.tables import make_table

    make_table(catalog, "test.ddp", files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    out = icefeed_home / "ddp-out"
    with serve("test.ddp", spark=spark, catalog=catalog, nodes=1) as feeder:
        feeder.wait_ready(180)
        proc = torchrun(
            Path(__file__).with_name("ddp_train.py"),
            [
                "--endpoint",
                feeder.endpoint,
                "--out",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                str(BATCH),
                "--workers",
                "1",
            ],
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    per_rank = -(-(ROWS // 2) // BATCH)  # drop_last=False: a short last batch is kept
    for epoch in range(2):
        a, b = (set(r["ids"][epoch]) for r in ranks)
        assert ranks[0]["batches"][epoch] == ranks[1]["batches"][epoch] == per_rank
        assert ranks[0]["lengths"][epoch] == ranks[1]["lengths"][epoch] == per_rank
        assert len(a) == len(b) == ROWS // 2
        assert not a & b, "ranks saw the same rows"
        assert a | b == set(range(ROWS))
    assert ranks[0]["ids"][0] != ranks[0]["ids"][1], "epochs 0 and 1 had the same order"
    assert ranks[0]["params"] == ranks[1]["params"], "gradients were not synchronised"
