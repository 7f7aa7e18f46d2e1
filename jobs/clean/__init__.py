"""The clean job: raw source → typed, checked, deduplicated Iceberg table + rejects table.

``CleanSpec`` (YAML, validated once) describes the job; ``run(spec)`` executes
it and returns a ``CleanReport``. Names are resolved lazily so that importing
``jobs.clean.cli`` (for ``icefeed --help``) loads neither pydantic nor Spark.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.clean.job import run
    from jobs.clean.report import CleanReport
    from jobs.clean.spec import CleanSpec, load_spec

__all__ = ["CleanReport", "CleanSpec", "load_spec", "run"]

_HOMES = {
    "CleanReport": "jobs.clean.report",
    "CleanSpec": "jobs.clean.spec",
    "load_spec": "jobs.clean.spec",
    "run": "jobs.clean.job",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'jobs.clean' has no attribute {name!r}")
