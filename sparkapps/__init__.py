"""SparkApplication manifests for the Kubeflow Spark operator, and the code around them.

Public API (names from the design; loaded lazily so ``icefeed --help`` stays fast)::

    render(template, values) -> dict            sparkapps.rendering
    validate(manifest) -> list[Problem]          sparkapps.validation
    submit / status / wait / logs / delete       sparkapps.kube (official kubernetes client)
    list_objects / events / follow_logs          sparkapps.observe
    trigger (run a ScheduledSparkApplication)    sparkapps.schedule
    plan_local_run / run_local                   sparkapps.local (``icefeed sparkapp run-local``)

Every failure raises :class:`jobs.errors.ManifestError` or a subclass from
:mod:`sparkapps.problems`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparkapps.kube import delete, logs, status, submit, wait
    from sparkapps.local import plan_local_run, run_local
    from sparkapps.observe import events, follow_logs, list_objects
    from sparkapps.problems import Problem
    from sparkapps.rendering import render
    from sparkapps.schedule import trigger
    from sparkapps.state import AppState, AppStatus
    from sparkapps.validation import validate

__all__ = [
    "AppState",
    "AppStatus",
    "Problem",
    "delete",
    "events",
    "follow_logs",
    "list_objects",
    "logs",
    "plan_local_run",
    "render",
    "run_local",
    "status",
    "submit",
    "trigger",
    "validate",
    "wait",
]

_HOMES = {
    "render": "sparkapps.rendering",
    "validate": "sparkapps.validation",
    "submit": "sparkapps.kube",
    "status": "sparkapps.kube",
    "wait": "sparkapps.kube",
    "logs": "sparkapps.kube",
    "delete": "sparkapps.kube",
    "list_objects": "sparkapps.observe",
    "events": "sparkapps.observe",
    "follow_logs": "sparkapps.observe",
    "trigger": "sparkapps.schedule",
    "plan_local_run": "sparkapps.local",
    "run_local": "sparkapps.local",
    "Problem": "sparkapps.problems",
    "AppState": "sparkapps.state",
    "AppStatus": "sparkapps.state",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sparkapps' has no attribute {name!r}")
