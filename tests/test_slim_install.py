"""``pip install 'icefeed[torch]'`` in a fresh venv brings only what training imports, and trains.

A wheel of this checkout is built (no isolation: the dev venv's setuptools) and
installed with the ``torch`` extra into a new virtualenv — torch pinned as in the
Makefile, so pip takes this machine's CPU build. The venv must hold none of the
lakehouse and Spark packages; a script run with that venv's interpreter, outside
the repository, trains a linear model through FeederDataset (2 DataLoader
workers) from a real feeder served by the test process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.wheels import build_wheel

REPO = Path(__file__).resolve().parents[1]
#: distributions a training process must not drag in (importable names in parentheses)
HEAVY = {
    "pyiceberg": "pyiceberg",
    "sqlalchemy": "sqlalchemy",
    "pyspark": "pyspark",
    "pandas": "pandas",
    "pyyaml": "yaml",
    "rich": "rich",
    "kubernetes": "kubernetes",
}

TRAIN = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch.utils.data import DataLoader
    from feeder.torch import FeederDataset

    ds = FeederDataset(sys.argv[1], batch_size=100, columns=["id", "x"], seed=1)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids, losses = [], []
    for epoch in range(2):
        ds.set_epoch(epoch)
        for batch in DataLoader(ds, batch_size=None, num_workers=2):
            x = batch["x"].float().unsqueeze(1) / 1000  # x is id / 2: 0 .. 999.5
            loss = torch.nn.functional.mse_loss(model(x), 3 * x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if epoch == 0:
                ids.extend(batch["id"].tolist())
    print(json.dumps({
        "rows": len(ids), "distinct": len(set(ids)), "len": len(ds),
        "first_loss": losses[0], "last_loss": losses[-1],
        "modules": sorted(m.split(".")[0] for m in sys.modules),
        "feeder": sys.modules["feeder"].__file__,
    }))
    """
)


def _torch_pin() -> str:
    match = re.search(r"^TORCH_PIN\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert match, "Makefile has no TORCH_PIN"
    return match.group(1)


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slim")
    wheel = build_wheel(root)
    _run([sys.executable, "-m", "venv", "venv"], root)
    _run([str(root / "venv/bin/pip"), "install", "--quiet", f"{wheel}[torch]", _torch_pin()], root)
    return root / "venv"


@pytest.mark.slow
def test_the_torch_extra_installs_nothing_a_training_process_does_not_import(slim_venv: Path):
    listed = json.loads(_run([str(slim_venv / "bin/pip"), "list", "--format", "json"], slim_venv))
    installed = {d["name"].lower() for d in listed}
    assert {"icefeed", "torch", "pyarrow", "numpy", "pydantic"} <= installed
    assert not installed & set(HEAVY), sorted(installed & set(HEAVY))


@pytest.mark.slow
def test_a_training_script_in_the_slim_venv_reads_every_row_and_learns(
    slim_venv: Path, catalog, tmp_path: Path
):
    from tests.feeder.local_feeder import local_feeder
    from tests.feeder.tables import make_table

    make_table(catalog, rows_per_file=1000)  # 2000 rows: id 0..1999, x in [0, 1)
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    with local_feeder(catalog, cache_dir=tmp_path / "cache") as feed:
        out = _run([str(slim_venv / "bin/python"), str(script), feed.endpoint], tmp_path, 300)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["feeder"].startswith(str(slim_venv)), report["feeder"]  # not this checkout
    assert report["rows"] == report["distinct"] == 2000
    assert report["len"] == 20
    assert report["last_loss"] < report["first_loss"]
    assert not set(report["modules"]) & set(HEAVY.values())


@pytest.mark.slow
def test_the_icefeed_command_without_its_extra_names_the_extra_to_install(slim_venv: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(slim_venv / "bin/icefeed"), "sparkapp", "render", "clean-flights"],
        cwd=slim_venv,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "this command needs 'yaml', which comes with the 'lakehouse' extra" in proc.stderr
    assert "pip install 'icefeed[lakehouse]'" in proc.stderr
    assert "Traceback" not in proc.stderr
