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


def _script_against_a_feeder(
    script: str, catalog, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``script`` (argv[1] = the endpoint) in a fresh interpreter against a feeder
    over a 2,000-row table served by this process; return its result and the endpoint."""
    from tests.feeder.local_feeder import local_feeder
    from tests.feeder.tables import make_table

    make_table(catalog, rows_per_file=1000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with local_feeder(catalog, cache_dir=tmp_path / "cache") as feed:
        proc = subprocess.run(
            [sys.executable, "-c", script, feed.endpoint],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,  # a hang fails here
        )
    return proc, feed.endpoint


CLEAN_MAIN = textwrap.dedent(
    """
    import sys

    from torch.utils.data import DataLoader

    from feeder.protocol import fork_guard
    from feeder.torch import FeederDataset

    ds = FeederDataset(sys.argv[1], batch_size=64, columns=["id"], shuffle=False)
    for epoch in range(3):  # one forked DataLoader per epoch, as in a training loop
        ds.set_epoch(epoch)
        n = len(ds)  # asks the coordinator: before the fix, the next fork often hung
        assert fork_guard.used() == [], fork_guard.used()
        ids = [i for b in DataLoader(ds, batch_size=None, num_workers=2) for i in b["id"].tolist()]
        print(f"epoch {epoch}: len {n} rows {len(ids)} distinct {len(set(ids))}", flush=True)
    """
)


@pytest.mark.slow
def test_len_in_the_main_process_keeps_it_safe_to_fork_dataloader_workers(catalog, tmp_path):
    """``len(ds)`` asks the coordinator from a forked child, so the forked workers that
    follow never inherit gRPC (a parent that made one Flight call, even closed, made
    most such children hang: fork_guard's docstring)."""
    proc, _ = _script_against_a_feeder(CLEAN_MAIN, catalog, tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
    lines = proc.stdout.splitlines()
    assert lines == [f"epoch {e}: len 32 rows 2000 distinct 2000" for e in range(3)], lines


USED_THEN_FORKED = textwrap.dedent(
    """
    import sys

    from torch.utils.data import DataLoader

    from feeder.client.client import FeederClient
    from feeder.torch import FeederDataset
    from jobs.errors import FeederError

    with FeederClient(sys.argv[1]) as client:  # any gRPC use, closed at once
        client.status()
    ds = FeederDataset(sys.argv[1], batch_size=64, columns=["id"], shuffle=False)
    try:
        sum(len(b["id"]) for b in DataLoader(ds, batch_size=None, num_workers=1))
    except FeederError as exc:
        print(exc, flush=True)
        sys.exit(3)
    """
)


@pytest.mark.slow
def test_workers_forked_after_a_closed_client_fail_fast_naming_it(catalog, tmp_path):
    proc, endpoint = _script_against_a_feeder(USED_THEN_FORKED, catalog, tmp_path)
    assert proc.returncode == 3, (proc.stdout, proc.stderr[-3000:])
    assert f"Flight client of {endpoint} (closed)" in proc.stdout
    assert 'multiprocessing_context="forkserver"' in proc.stdout
