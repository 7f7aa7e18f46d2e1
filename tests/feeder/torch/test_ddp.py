"""A real 2-process DDP run (torchrun, gloo on CPU) trained from a feeder for 2 epochs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ROWS = 4000
BATCH = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.spark
@pytest.mark.slow
def test_two_process_ddp_sees_disjoint_rows_and_syncs_gradients(spark, catalog, icefeed_home):
    from feeder.coordinator.session import serve
    from tests.feeder.tables import make_table

    make_table(catalog, "test.ddp", files=2, rows_per_file=ROWS // 2, row_group_rows=500)
    out = icefeed_home / "ddp-out"
    with serve("test.ddp", spark=spark, catalog=catalog, nodes=1) as feeder:
        feeder.wait_ready(180)
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            # a script's folder comes first on sys.path: in tests/feeder/ the test package
            # tests/feeder/torch/ would shadow the real torch
            str(REPO / "tests" / "feeder" / "torch" / "ddp_train.py"),
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
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
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
