"""The icefeed feeder: Arrow IPC slice cache on Spark executors, served over Arrow Flight.

``feeder.serve`` (needs pyspark) is imported lazily, so ``import feeder.client``
on a training pod stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve"]


def __getattr__(name: str) -> Any:
    if name == "serve":
        import importlib

        return importlib.import_module("feeder.serve")  # a callable module: serve(table, ...)
    raise AttributeError(f"module 'feeder' has no attribute {name!r}")
