"""Cache folders of dead nodes are swept; a live node's never (real processes, real flock)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from feeder.node.cache_dirs import claim_folder, sweep_dead_folders

REPO = Path(__file__).resolve().parents[3]

CLAIM = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from feeder.node.cache_dirs import claim_folder
    claimed = claim_folder(Path(sys.argv[1]), sys.argv[2])
    (claimed.path / "slice-00000000.arrow").write_bytes(b"x" * 1000)
    print("claimed", flush=True)
    sys.stdin.read()  # live until the test closes stdin or kills it
    """
)


def _node_process(parent: Path, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(parent), name],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_sigkilled_nodes_folder_is_swept_and_a_live_nodes_is_not(tmp_path):
    dead = _node_process(tmp_path, "icefeed-node-a-1")
    live = _node_process(tmp_path, "icefeed-node-b-2")
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        (tmp_path / "icefeed-node-foreign").mkdir()  # no lock file: not ours, left alone
        mine = claim_folder(tmp_path, "icefeed-node-c-3")  # this process: live too
        assert sweep_dead_folders(tmp_path) == [tmp_path / "icefeed-node-a-1"]
        assert not (tmp_path / "icefeed-node-a-1").exists()
        assert (tmp_path / "icefeed-node-b-2" / "slice-00000000.arrow").exists()
        assert mine.path.exists() and (tmp_path / "icefeed-node-foreign").exists()
        mine.release()
        assert not mine.path.exists()
    finally:
        live.kill()
        live.wait(10)
    assert sweep_dead_folders(tmp_path) == [tmp_path / "icefeed-node-b-2"]  # now dead
