"""Run a Python module as a Spark application's main file: ``launch.py MODULE [ARGS...]``.

A SparkApplication of ``type: Python`` names a *file* (``mainApplicationFile``),
while icefeed's entry points are modules (``python -m jobs.clean``). This file
bridges the two: ``local:///opt/icefeed/sparkapps/launch.py jobs.clean SPEC.yaml``
runs ``jobs.clean`` exactly as ``python -m jobs.clean SPEC.yaml`` would.

It removes its own folder from ``sys.path`` first, so modules beside it can
never shadow top-level packages.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str]) -> None:
    """Run module ``argv[1]`` as ``__main__`` with the remaining arguments."""
    if len(argv) < 2:
        sys.exit("usage: launch.py MODULE [ARGS...]")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv)
