"""Run a ScheduledSparkApplication now: the SparkApplication its operator would create.

The Spark operator (v2) starts a scheduled run by creating a SparkApplication
named ``<scheduled name>-<unix nanoseconds>`` whose spec is the scheduled
application's ``spec.template``, labelled
``sparkoperator.k8s.io/scheduled-app-name: <scheduled name>`` (plus the
scheduled application's own labels) and owned by it (an owner reference, so
deleting the schedule deletes its runs). :func:`run_from_schedule` builds the
same object, pure; :func:`trigger` reads the schedule and submits it like
``icefeed sparkapp submit`` (validation, server-side dry run, create).

A manual run is not one of the operator's: its ``concurrencyPolicy`` and run
history (``status.lastRun``, the history limits) do not apply to it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobs.errors import ManifestError
from sparkapps.crds import API_VERSION, Kind, crd_source
from sparkapps.kube import checked_body, get_object, submit_body

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sparkapps.crds import CrdSource
    from sparkapps.state import AppStatus
    from sparkapps.validation import SkippedCheck

#: the label the operator puts on every run of a ScheduledSparkApplication
SCHEDULED_APP_LABEL = "sparkoperator.k8s.io/scheduled-app-name"
#: marks a run started by ``icefeed sparkapp trigger`` rather than by the schedule
TRIGGERED_ANNOTATION = "icefeed.io/triggered-by"
#: metadata.name limit of a SparkApplication (a DNS-1123 label; pod names derive from it)
MAX_NAME = 63


def run_name(scheduled_name: str, now_ns: int) -> str:
    """Return ``<scheduled_name>-<now_ns>``, the prefix shortened to fit 63 characters."""
    suffix = f"-{now_ns}"
    return scheduled_name[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def run_from_schedule(scheduled: Mapping[str, Any], *, now_ns: int) -> dict[str, Any]:
    """Return the SparkApplication for a run of ``scheduled`` started at ``now_ns``.

    Args:
        scheduled: a ScheduledSparkApplication as the API serves it (with ``metadata.uid``).
        now_ns: the run's start, Unix nanoseconds (it names the run).

    Returns:
        A new SparkApplication: the template's spec, the operator's labels, an owner
        reference to ``scheduled``.

    Raises:
        ManifestError: ``scheduled`` is not a ScheduledSparkApplication read from a
            cluster (no uid) or has no ``spec.template``.
    """
    if scheduled.get("kind") != Kind.SCHEDULED_SPARK_APPLICATION.value:
        raise ManifestError(f"{scheduled.get('kind')!r} is not a ScheduledSparkApplication")
    metadata = scheduled.get("metadata") or {}
    name, uid = metadata.get("name"), metadata.get("uid")
    if not name or not uid:
        raise ManifestError("the ScheduledSparkApplication needs metadata.name and metadata.uid")
    template = (scheduled.get("spec") or {}).get("template")
    if not isinstance(template, Mapping):
        raise ManifestError(f"ScheduledSparkApplication {name!r} has no spec.template")
    run_metadata: dict[str, Any] = {
        "name": run_name(str(name), now_ns),
        "labels": {SCHEDULED_APP_LABEL: str(name), **(metadata.get("labels") or {})},
        "annotations": {TRIGGERED_ANNOTATION: "icefeed sparkapp trigger"},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": Kind.SCHEDULED_SPARK_APPLICATION.value,
                "name": str(name),
                "uid": str(uid),
                "blockOwnerDeletion": True,
            }
        ],
    }
    if metadata.get("namespace"):
        run_metadata["namespace"] = metadata["namespace"]
    return {
        "apiVersion": API_VERSION,
        "kind": Kind.SPARK_APPLICATION.value,
        "metadata": run_metadata,
        "spec": copy.deepcopy(dict(template)),
    }


def trigger(
    name: str,
    *,
    namespace: str,
    client: ApiClient,
    crds: CrdSource | None = None,
    on_skipped: Callable[[SkippedCheck], None] | None = None,
) -> AppStatus:
    """Start a run of ScheduledSparkApplication ``name`` now; return the new run's status.

    Args:
        name: the ScheduledSparkApplication's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient``.
        crds: where the CRD schemas come from (default: ``$ICEFEED_CRDS_DIR``, else the
            cluster).
        on_skipped: told of each check skipped for want of a schema (default: a warning
            in the log).

    Returns:
        The status of the SparkApplication created (its name is ``status.name``).

    Raises:
        ApplicationNotFoundError: no such ScheduledSparkApplication.
        ManifestInvalidError: the run does not validate (nothing was created).
        KubernetesApiError: the server's dry run or the create was refused.
    """
    scheduled = get_object(
        name, namespace=namespace, kind=Kind.SCHEDULED_SPARK_APPLICATION, client=client
    )
    run = run_from_schedule(scheduled, now_ns=time.time_ns())
    source = crds or crd_source(client_factory=lambda: client)
    body = checked_body(run, namespace, crds=source, on_skipped=on_skipped)
    _, created = submit_body(body, client=client)  # a fresh name: always created
    return created
