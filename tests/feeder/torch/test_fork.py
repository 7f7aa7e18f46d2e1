"""DataLoader workers forked from a process that runs a feeder fail fast with a clear error.

Without the guard such a worker hangs at its first gRPC call (reproduced: a
DataLoader with 2 forked workers over an in-process feeder did not finish in 90 s).
The run happens in a subprocess with a timeout, so a hang fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from pathlib import Path

    from torch.utils.data import DataLoader

    from feeder.torch import FeederDataset
    from jobs.catalog import load_catalog
    from jobs.errors import FeederError
    from tests.feeder.local_feeder import local_feeder
    from tests.feeder.tables import make_table

    assert multiprocessing.get_start_method() == "fork"  # torch's default on Linux
    catalog = load_catalog()
    catalog.create_namespace("test")
    make_table(catalog)
    with local_feeder(catalog, cache_dir=Path(sys.argv[1])) as feed:
        ds = FeederDataset(feed.endpoint, batch_size=64, columns=["id"], shuffle=False)
        start = time.monotonic()
        try:
            rows = sum(len(b["id"]) for b in DataLoader(ds, batch_size=None, num_workers=2))
        except FeederError as exc:
            print(f"FAILED after {time.monotonic() - start:.1f}s: {exc}", flush=True)
            sys.exit(3)
        print(f"read {rows} rows", flush=True)
    """
)


@pytest.mark.slow
def test_forked_dataloader_workers_of_a_feeder_process_fail_fast_naming_the_fix(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ICEFEED_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "cache")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,  # a hang (what the guard prevents) fails here
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr[-3000:])
    out = proc.stdout
    assert "DataLoader worker" in out and "was forked from a process that runs gRPC" in out
    assert 'multiprocessing_context="forkserver" (or "spawn")' in out
    assert "Coordinator Flight server on port" in out
    waited = float(out.split("FAILED after ")[1].split("s:")[0])
    assert waited < 60, out  # fails fast: no waiting for a timeout
