"""A training process of its own that reads one epoch across a feeder restart.

``python -m tests.feeder.restart_consumer ENDPOINT MODE SHUFFLE PAUSE_BATCHES OUT [EPOCHS]``:
iterates epoch 0 of job ``restart-e2e`` through a real :class:`~feeder.torch.FeederDataset`
(batches of 500 rows; ``SHUFFLE`` ``slice`` or ``mix``, MIX windows of 1000 rows);
after ``PAUSE_BATCHES`` batches it prints
``read PAUSE_BATCHES batches`` and waits for a line on stdin (the test kills and
restarts the feeder meanwhile), then reads on to the end of the epoch, writes the
``id`` of every row it got, as JSON, to ``OUT`` and prints ``DONE``. With ``EPOCHS``
(default 1) above 1 it then reads epochs 1.. too, writing each one's ids to
``OUT.<epoch>`` and printing ``DONE <epoch>``. Exit code 0 only if every epoch ended
without an error.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from feeder.protocol.mix import MixParams
from feeder.torch import FeederDataset

BATCH_ROWS = 500
#: MIX windows far smaller than the table: most of the epoch is still unread at the pause
MIX = MixParams(block_rows=50, window_rows=1000)
#: a restarted Spark driver on a busy 2-core machine takes a while to answer again
RESTART_SECONDS = 240.0


def main(argv: list[str]) -> int:
    """Read the epoch; see the module docstring for the arguments."""
    endpoint, mode, shuffle, pause, out = argv[0], argv[1], argv[2], int(argv[3]), Path(argv[4])
    dataset = FeederDataset(
        endpoint,
        batch_size=BATCH_ROWS,
        columns=["id"],
        job="restart-e2e",
        mode=mode,
        shuffle=shuffle,
        seed=11,
        mix=MIX,
        restart_seconds=RESTART_SECONDS,
    )
    dataset.set_epoch(0)
    ids: list[int] = []
    for n, batch in enumerate(dataset, start=1):
        ids.extend(int(i) for i in batch["id"].tolist())
        if n == pause:
            print(f"read {n} batches", flush=True)
            sys.stdin.readline()  # the test kills and restarts the feeder, then says go
    out.write_text(json.dumps(ids))
    print("DONE", flush=True)
    for epoch in range(1, int(argv[5]) if len(argv) > 5 else 1):
        dataset.set_epoch(epoch)
        ids = [int(i) for batch in dataset for i in batch["id"].tolist()]
        out.with_name(f"{out.name}.{epoch}").write_text(json.dumps(ids))
        print(f"DONE {epoch}", flush=True)
    dataset.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(main(sys.argv[1:]))
