"""submit / status / wait / logs / delete against a cluster with the official client.

CustomObjectsApi for the operator's resources, CoreV1Api for driver logs.
Connection: an explicit ``kubernetes.client.ApiClient``, else in-cluster
configuration inside a pod, else the kubeconfig (``$KUBECONFIG`` or
``~/.kube/config``). Every failure raises ManifestError or a subclass from
:mod:`sparkapps.problems`, whatever went wrong underneath.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobs.errors import ManifestError
from jobs.extras import require
from sparkapps.crds import GROUP, VERSION, Kind
from sparkapps.problems import (
    ApplicationExistsError,
    ApplicationFailedError,
    ApplicationNotFoundError,
    KubernetesApiError,
    ManifestInvalidError,
    WaitTimeoutError,
)
from sparkapps.state import AppState, AppStatus
from sparkapps.validation import validate

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"
DRIVER_CONTAINER = "spark-kubernetes-driver"


def connect(*, kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """Return an ApiClient: in-cluster inside a pod, else from the kubeconfig.

    Raises ManifestError when neither is available (the message says how to fix it).
    """
    kubernetes = require("kubernetes", "k8s")
    from kubernetes.config.config_exception import ConfigException

    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError) as exc:
        raise ManifestError(
            f"no Kubernetes configuration: {exc}; set KUBECONFIG or pass --kubeconfig "
            "(inside a pod, the service account is used)"
        ) from exc
    return kubernetes.client.ApiClient(configuration)


def _api_error(exc: Exception, what: str) -> ManifestError:
    kubernetes = require("kubernetes", "k8s")
    if isinstance(exc, kubernetes.client.ApiException):
        status = int(exc.status or 0)
        reason = exc.reason or ""
        detail = ""
        if exc.body:
            import json

            try:
                detail = str(json.loads(exc.body).get("message", ""))
            except (ValueError, AttributeError):
                detail = ""
        message = f"{what}: HTTP {status} {reason}" + (f": {detail}" if detail else "")
        if status == 409:
            return ApplicationExistsError(
                message + " (delete it first or choose another metadata.name)", status=status
            )
        if status == 404:
            return ApplicationNotFoundError(
                message + " (check the name and --namespace)", status=status
            )
        return KubernetesApiError(message, status=status)
    return KubernetesApiError(f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})")


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    kubernetes = require("kubernetes", "k8s")
    import urllib3

    try:
        return fn(*args, **kwargs)
    except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _api_error(exc, what) from exc


def _client(client: ApiClient | None) -> ApiClient:
    return client if client is not None else connect()


def resolve_namespace(manifest: Mapping[str, Any], namespace: str | None) -> str:
    """Return the namespace to use: ``namespace``, else metadata.namespace, else ``default``.

    Raises ManifestError if both are given and differ.
    """
    declared = (manifest.get("metadata") or {}).get("namespace")
    if namespace and declared and namespace != declared:
        raise ManifestError(
            f"--namespace {namespace!r} differs from metadata.namespace {declared!r}; "
            "drop one of them"
        )
    return str(namespace or declared or DEFAULT_NAMESPACE)


def checked_body(manifest: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """Return the body ``submit`` sends: a copy with the namespace set, validated.

    Raises ManifestInvalidError listing every problem (nothing is sent then).
    """
    ns = resolve_namespace(manifest, namespace)
    body = copy.deepcopy(dict(manifest))
    if isinstance(body.get("metadata"), dict):
        body["metadata"]["namespace"] = ns  # validated as it will be sent
    problems = validate(body)
    if problems:
        name = (manifest.get("metadata") or {}).get("name", "?")
        raise ManifestInvalidError(f"{manifest.get('kind', 'manifest')} {name!r}", problems)
    return body


def submit(
    manifest: Mapping[str, Any],
    *,
    namespace: str | None = None,
    client: ApiClient | None = None,
) -> AppStatus:
    """Validate ``manifest`` and create it on the cluster.

    Args:
        manifest: a SparkApplication or ScheduledSparkApplication.
        namespace: overrides the manifest's namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).

    Returns:
        The created object's status.

    Raises:
        ManifestInvalidError: validation found problems (nothing was sent).
        ApplicationExistsError: the name is taken (HTTP 409).
    """
    body = checked_body(manifest, namespace)
    ns = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    kind = Kind.parse(body.get("kind"))
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(_client(client))
    created = _call(
        f"create {kind.value} {name!r} in namespace {ns!r}",
        api.create_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        kind.plural,
        body,
    )
    log.info("submitted %s %s/%s", kind.value, ns, name)
    return AppStatus.from_object(created)


def get_object(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    kind: Kind = Kind.SPARK_APPLICATION,
    client: ApiClient | None = None,
) -> dict[str, Any]:
    """Return the custom object ``name`` as the API serves it."""
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(_client(client))
    obj = _call(
        f"get {kind.value} {name!r} in namespace {namespace!r}",
        api.get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        kind.plural,
        name,
    )
    return dict(obj)


def status(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    client: ApiClient | None = None,
) -> AppStatus:
    """Return the operator's status of SparkApplication ``name``.

    Args:
        name: the application's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).

    Returns:
        The application's state, driver pod and error message, if any.

    Raises:
        ManifestError: the application does not exist or the API call failed.
    """
    return AppStatus.from_object(get_object(name, namespace=namespace, client=client))


def wait(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    client: ApiClient | None = None,
    timeout: float = 3600.0,
    poll_seconds: float = 2.0,
    on_change: Callable[[AppStatus], None] | None = None,
) -> AppStatus:
    """Poll until the application is COMPLETED (returned) or FAILED (raised).

    Args:
        name: the application's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).
        timeout: seconds to wait in all.
        poll_seconds: seconds between two status reads.
        on_change: called with each new state as it is first seen.

    Returns:
        The final status (COMPLETED).

    Raises:
        ApplicationFailedError: FAILED, with the operator's errorMessage.
        WaitTimeoutError: still running after ``timeout`` seconds.
    """
    api_client = _client(client)
    deadline = time.monotonic() + timeout
    last: AppState | None = None
    while True:
        current = status(name, namespace=namespace, client=api_client)
        if current.state is not last:
            last = current.state
            log.info("%s/%s: %s", namespace, name, current.state.value or "NEW")
            if on_change is not None:
                on_change(current)
        if current.state is AppState.COMPLETED:
            return current
        if current.state is AppState.FAILED:
            raise ApplicationFailedError(name, current.error_message)
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"SparkApplication {name!r} is still {current.state.value or 'NEW'} after "
                f"{timeout:g}s; see: icefeed sparkapp status {name} --namespace {namespace}"
            )
        time.sleep(poll_seconds)


def logs(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    client: ApiClient | None = None,
    tail_lines: int | None = None,
) -> str:
    """Return the driver pod's log (pod named by ``status.driverInfo.podName``).

    Args:
        name: the application's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).
        tail_lines: only the last lines (None: the whole log).

    Returns:
        The log text.

    Raises:
        ManifestError: the operator has not started a driver yet, or the call failed.
    """
    api_client = _client(client)
    current = status(name, namespace=namespace, client=api_client)
    if not current.driver_pod:
        raise ManifestError(
            f"SparkApplication {name!r} has no driver pod yet (state "
            f"{current.state.value or 'NEW'}); try again once it is RUNNING"
        )
    kubernetes = require("kubernetes", "k8s")
    core = kubernetes.client.CoreV1Api(api_client)
    kwargs: dict[str, Any] = {"container": DRIVER_CONTAINER}
    if tail_lines is not None:
        kwargs["tail_lines"] = tail_lines
    text = _call(
        f"read the log of driver pod {current.driver_pod!r}",
        core.read_namespaced_pod_log,
        current.driver_pod,
        namespace,
        **kwargs,
    )
    return str(text)


def delete(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    kind: Kind = Kind.SPARK_APPLICATION,
    client: ApiClient | None = None,
) -> None:
    """Delete the custom object ``name`` (the operator then removes its pods).

    Args:
        name: the object's name.
        namespace: its namespace.
        kind: SparkApplication or ScheduledSparkApplication.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).

    Raises:
        ManifestError: the object does not exist or the API call failed.
    """
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(_client(client))
    _call(
        f"delete {kind.value} {name!r} in namespace {namespace!r}",
        api.delete_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        kind.plural,
        name,
    )
    log.info("deleted %s %s/%s", kind.value, namespace, name)
