"""Look at what runs: list applications, their events, and follow the driver's log.

Reads only (CustomObjectsApi lists, CoreV1Api events and pod logs); every failure
raises ManifestError or a subclass, as in :mod:`sparkapps.kube`.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.extras import require
from sparkapps.crds import GROUP, VERSION, Kind
from sparkapps.kube import (
    DEFAULT_NAMESPACE,
    DRIVER_CONTAINER,
    call_api,
    ensure_client,
    poll_status,
    status,
)
from sparkapps.problems import KubernetesApiError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

#: bytes read from the log stream at a time
_CHUNK = 4096


def list_objects(
    *,
    namespace: str | None = DEFAULT_NAMESPACE,
    kind: Kind = Kind.SPARK_APPLICATION,
    selector: str | None = None,
    client: ApiClient | None = None,
) -> list[dict[str, Any]]:
    """Return the (Scheduled)SparkApplications in ``namespace`` (None: every namespace).

    Args:
        namespace: the namespace to list, or None for all of them.
        kind: SparkApplication or ScheduledSparkApplication.
        selector: a label selector (``app=x,tier!=y``), as kubectl's ``-l``.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).

    Returns:
        The objects as the API serves them, sorted by namespace and name.

    Raises:
        ManifestError: the API call failed.
    """
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(ensure_client(client))
    kwargs = {"label_selector": selector} if selector else {}
    where = f"namespace {namespace!r}" if namespace else "all namespaces"
    what = f"list {kind.value}s in {where}"
    if namespace:
        listed = call_api(
            what,
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            kind.plural,
            **kwargs,
        )
    else:
        listed = call_api(
            what, api.list_cluster_custom_object, GROUP, VERSION, kind.plural, **kwargs
        )
    items = [dict(item) for item in listed.get("items") or []]
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """One Kubernetes event about an application or its driver pod."""

    time: str
    type: str
    reason: str
    object: str  # Kind/name
    message: str
    count: int = 1

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> EventRecord:
        """Build from a core/v1 Event as the API returns it."""
        involved = event.get("involvedObject") or {}
        when = (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )
        return cls(
            time=str(when),
            type=str(event.get("type") or ""),
            reason=str(event.get("reason") or ""),
            object=f"{involved.get('kind', '?')}/{involved.get('name', '?')}",
            message=str(event.get("message") or "").strip(),
            count=int(event.get("count") or 1),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (for ``--json``)."""
        return {
            "time": self.time,
            "type": self.type,
            "reason": self.reason,
            "object": self.object,
            "message": self.message,
            "count": self.count,
        }


def _events_of(core: Any, namespace: str, kind: str, name: str) -> list[EventRecord]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    response = call_api(
        f"list the events of {kind} {name!r} in namespace {namespace!r}",
        core.list_namespaced_event,
        namespace,
        field_selector=selector,
        _preload_content=False,
    )
    return [EventRecord.from_event(e) for e in json.loads(response.data).get("items") or []]


def events(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    kind: Kind = Kind.SPARK_APPLICATION,
    client: ApiClient | None = None,
) -> list[EventRecord]:
    """Return the events of an application and, once it has one, of its driver pod.

    The operator records its steps on the application (submitted, driver
    running, failed, ...); the kubelet records scheduling, image pulls and
    crashes on the driver pod. Both are returned, oldest first.

    Args:
        name: the application's name.
        namespace: its namespace.
        kind: SparkApplication or ScheduledSparkApplication.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).

    Returns:
        The events, sorted by time.

    Raises:
        ManifestError: the application does not exist or a call failed.
    """
    api_client = ensure_client(client)
    core = require("kubernetes", "k8s").client.CoreV1Api(api_client)
    driver = None
    if kind is Kind.SPARK_APPLICATION:  # first: a missing application is an error
        driver = status(name, namespace=namespace, client=api_client).driver_pod
    found = _events_of(core, namespace, kind.value, name)
    if driver:
        found += _events_of(core, namespace, "Pod", driver)
    return sorted(found, key=lambda e: e.time)


def follow_logs(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    client: ApiClient | None = None,
    timeout: float = 600.0,
    poll_seconds: float = 2.0,
) -> Iterator[str]:
    """Yield the driver's log as it is written, until the driver container ends.

    Waits (up to ``timeout`` seconds) for the operator to start a driver and
    for its container to start, then streams ``follow=true``.

    Args:
        name: the application's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).
        timeout: seconds to wait for the driver to start (not for it to end).
        poll_seconds: seconds between two checks while waiting.

    Yields:
        Pieces of the log text, in order (not necessarily whole lines).

    Raises:
        ApplicationFailedError: it FAILED before a driver started.
        ManifestError: it ended without a driver, or a call failed.
        WaitTimeoutError: the driver did not start in time.
    """
    api_client = ensure_client(client)
    deadline = time.monotonic() + timeout
    pod = poll_status(
        name,
        namespace=namespace,
        client=api_client,
        timeout=timeout,
        poll_seconds=poll_seconds,
        until=lambda current: bool(current.driver_pod),
        waiting_for="driver pod",
    ).driver_pod
    core = require("kubernetes", "k8s").client.CoreV1Api(api_client)
    while True:
        try:
            response = call_api(
                f"follow the log of driver pod {pod!r}",
                core.read_namespaced_pod_log,
                pod,
                namespace,
                container=DRIVER_CONTAINER,
                follow=True,
                _preload_content=False,
            )
            break
        except KubernetesApiError as exc:
            # 400 while the container is still waiting to start (pulling its image)
            if exc.status != 400 or time.monotonic() >= deadline:
                raise
            time.sleep(poll_seconds)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        for chunk in response.stream(_CHUNK):
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
    finally:
        response.release_conn()
