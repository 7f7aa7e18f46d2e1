"""submit / status / wait / logs / delete against a cluster with the official client.

CustomObjectsApi for the operator's resources, CoreV1Api for driver logs.
``submit`` validates locally, then asks the API server for a dry run
(``dryRun=All``, ``fieldValidation=Strict``: admission webhooks and the
installed CRD's schema run, unknown fields are refused, nothing is stored)
before the real create. An existing object of that name is an error unless the
caller asks to update it in place (PUT, the operator re-runs a changed spec) or to
replace it (delete, wait until it is gone, create: a fresh run).
Connection: an explicit ``kubernetes.client.ApiClient``, else in-cluster
configuration inside a pod, else the kubeconfig (``$KUBECONFIG`` or
``~/.kube/config``). Every failure raises ManifestError or a subclass from
:mod:`sparkapps.problems`, whatever went wrong underneath.
"""

from __future__ import annotations

import copy
import enum
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobs.errors import ManifestError
from jobs.extras import require
from sparkapps.crds import GROUP, VERSION, CrdSource, Kind, crd_source
from sparkapps.problems import (
    ApplicationExistsError,
    ApplicationFailedError,
    ApplicationNotFoundError,
    KubernetesApiError,
    ManifestInvalidError,
    WaitTimeoutError,
)
from sparkapps.state import AppState, AppStatus
from sparkapps.validation import SkippedCheck, validation_report

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"
DRIVER_CONTAINER = "spark-kubernetes-driver"
#: the API server refuses unknown or duplicate fields instead of dropping them
FIELD_VALIDATION = "Strict"


class OnExisting(enum.Enum):
    """What ``submit`` does when an object of that name exists."""

    FAIL = "fail"  # ApplicationExistsError, naming --update and --replace
    UPDATE = "update"  # PUT the new spec into the existing object
    REPLACE = "replace"  # delete it, wait until it is gone, create anew


class SubmitAction(enum.Enum):
    """What :func:`submit_body` did on the cluster."""

    CREATED = "created"
    UPDATED = "updated"  # the existing object now has the new spec
    REPLACED = "replaced"  # the existing object was deleted and a new one created
    UNCHANGED = "unchanged"  # --update with the spec the object already has


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


def call_api(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Return ``fn(*args, **kwargs)``; failures raise ManifestError (or a subclass) for ``what``."""
    kubernetes = require("kubernetes", "k8s")
    import urllib3

    try:
        return fn(*args, **kwargs)
    except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _api_error(exc, what) from exc


def ensure_client(client: ApiClient | None) -> ApiClient:
    """Return ``client``, else a new one from the environment (:func:`connect`)."""
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


def checked_body(
    manifest: Mapping[str, Any],
    namespace: str | None = None,
    *,
    crds: CrdSource | None = None,
    on_skipped: Callable[[SkippedCheck], None] | None = None,
) -> dict[str, Any]:
    """Return the body ``submit`` sends: a copy with the namespace set, validated.

    Args:
        manifest: a SparkApplication or ScheduledSparkApplication.
        namespace: overrides the manifest's namespace.
        crds: where the CRD schemas come from (default: ``$ICEFEED_CRDS_DIR`` if set).
        on_skipped: told of each check skipped for want of a schema (default: a warning
            in the log).

    Returns:
        The body, namespace set.

    Raises:
        ManifestInvalidError: listing every problem (nothing is sent then).
    """
    ns = resolve_namespace(manifest, namespace)
    body = copy.deepcopy(dict(manifest))
    if isinstance(body.get("metadata"), dict):
        body["metadata"]["namespace"] = ns  # validated as it will be sent
    report = validation_report(body, crds=crds)
    for skipped in report.skipped:
        if on_skipped is not None:
            on_skipped(skipped)
        else:
            log.warning("%s", skipped)
    if report.problems:
        name = (manifest.get("metadata") or {}).get("name", "?")
        raise ManifestInvalidError(f"{manifest.get('kind', 'manifest')} {name!r}", report.problems)
    return body


def submit(
    manifest: Mapping[str, Any],
    *,
    namespace: str | None = None,
    client: ApiClient | None = None,
    on_existing: OnExisting = OnExisting.FAIL,
    crds: CrdSource | None = None,
) -> AppStatus:
    """Validate ``manifest``, have the API server dry-run it, then write it to the cluster.

    Args:
        manifest: a SparkApplication or ScheduledSparkApplication.
        namespace: overrides the manifest's namespace.
        client: a kubernetes ``ApiClient`` (default: from kubeconfig or in-cluster).
        on_existing: what to do when an object of that name exists.
        crds: where CRD schemas come from (default: ``$ICEFEED_CRDS_DIR``, else the cluster).

    Returns:
        The written object's status.

    Raises:
        ManifestInvalidError: validation found problems (nothing was sent).
        ApplicationExistsError: the name is taken and ``on_existing`` is FAIL.
        KubernetesApiError: the server's dry run or the write was refused.
    """
    api_client = ensure_client(client)
    source = crds or crd_source(client_factory=lambda: api_client)
    body = checked_body(manifest, namespace, crds=source)
    _, result = submit_body(body, client=api_client, on_existing=on_existing)
    return result


def _write(what: str, fn: Callable[..., Any], *args: Any, dry_run: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"field_validation": FIELD_VALIDATION}
    if dry_run:
        kwargs["dry_run"] = "All"
        what = f"{what} (server-side dry run)"
    return dict(call_api(what, fn, *args, **kwargs))


def submit_body(
    body: Mapping[str, Any],
    *,
    client: ApiClient,
    on_existing: OnExisting = OnExisting.FAIL,
    replace_timeout: float = 120.0,
) -> tuple[SubmitAction, AppStatus]:
    """Send a checked body (:func:`checked_body`): a server-side dry run, then the write.

    Args:
        body: the manifest to send, namespace set.
        client: a kubernetes ``ApiClient``.
        on_existing: what to do when an object of that name exists.
        replace_timeout: seconds to wait for the old object to go (REPLACE).

    Returns:
        What was done, and the object's status as the server returned it.

    Raises:
        ApplicationExistsError: it exists and ``on_existing`` is FAIL (names the options).
        KubernetesApiError: the dry run or the write was refused (nothing was stored
            when the dry run was).
        WaitTimeoutError: REPLACE, and the old object was still there after the timeout.
    """
    ns = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    kind = Kind.parse(body.get("kind"))
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(client)
    coordinates = (GROUP, VERSION, ns, kind.plural)
    create = f"create {kind.value} {name!r} in namespace {ns!r}"
    try:
        _write(create, api.create_namespaced_custom_object, *coordinates, body, dry_run=True)
    except ApplicationExistsError as exc:
        if on_existing is OnExisting.FAIL:
            raise ApplicationExistsError(
                f"{kind.value} {ns}/{name} already exists; pass --update to put this spec into "
                "it (the operator re-runs a SparkApplication whose spec changed), --replace to "
                f"delete it and create it anew, or delete it: icefeed sparkapp delete {name} "
                f"-n {ns}",
                status=exc.status,
            ) from exc
        current = get_object(name, namespace=ns, kind=kind, client=client)
        if on_existing is OnExisting.UPDATE:
            return _update(api, body, kind, current)
        _update(api, body, kind, current, dry_run=True)  # the server's verdict, before deleting
        delete(name, namespace=ns, kind=kind, client=client)
        _wait_gone(name, namespace=ns, kind=kind, client=client, timeout=replace_timeout)
        created = _write(
            create, api.create_namespaced_custom_object, *coordinates, body, dry_run=False
        )
        log.info("replaced %s %s/%s", kind.value, ns, name)
        return SubmitAction.REPLACED, AppStatus.from_object(created)
    created = _write(create, api.create_namespaced_custom_object, *coordinates, body, dry_run=False)
    log.info("submitted %s %s/%s", kind.value, ns, name)
    return SubmitAction.CREATED, AppStatus.from_object(created)


def _content(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What an update changes: the spec, labels and annotations."""
    metadata = obj.get("metadata") or {}
    return obj.get("spec"), metadata.get("labels") or {}, metadata.get("annotations") or {}


def _update(
    api: Any,
    body: Mapping[str, Any],
    kind: Kind,
    current: Mapping[str, Any],
    *,
    dry_run: bool = False,
) -> tuple[SubmitAction, AppStatus]:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if not dry_run and _content(current) == _content(body):
        log.info("%s %s/%s already is this manifest; nothing to update", kind.value, ns, name)
        return SubmitAction.UNCHANGED, AppStatus.from_object(current)
    update = copy.deepcopy(dict(body))
    update["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    what = f"update {kind.value} {name!r} in namespace {ns!r}"
    arguments = (GROUP, VERSION, ns, kind.plural, name, update)
    try:
        _write(what, api.replace_namespaced_custom_object, *arguments, dry_run=True)
        if dry_run:
            return SubmitAction.UNCHANGED, AppStatus.from_object(current)
        updated = _write(what, api.replace_namespaced_custom_object, *arguments, dry_run=False)
    except ApplicationExistsError as exc:  # 409 on an update: it changed since we read it
        raise KubernetesApiError(
            f"{kind.value} {ns}/{name} changed while it was being updated; submit again",
            status=exc.status,
        ) from exc
    log.info("updated %s %s/%s", kind.value, ns, name)
    return SubmitAction.UPDATED, AppStatus.from_object(updated)


def _wait_gone(name: str, *, namespace: str, kind: Kind, client: ApiClient, timeout: float) -> None:
    """Poll until ``name`` is deleted (finalizers and foreground deletion take a while)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            get_object(name, namespace=namespace, kind=kind, client=client)
        except ApplicationNotFoundError:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"{kind.value} {namespace}/{name} is still being deleted after {timeout:g}s; "
                "nothing new was created (look at its finalizers: kubectl get -o yaml)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def get_object(
    name: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    kind: Kind = Kind.SPARK_APPLICATION,
    client: ApiClient | None = None,
) -> dict[str, Any]:
    """Return the custom object ``name`` as the API serves it."""
    kubernetes = require("kubernetes", "k8s")
    api = kubernetes.client.CustomObjectsApi(ensure_client(client))
    obj = call_api(
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
    return poll_status(
        name,
        namespace=namespace,
        client=ensure_client(client),
        timeout=timeout,
        poll_seconds=poll_seconds,
        until=lambda current: current.state is AppState.COMPLETED,
        waiting_for="COMPLETED",
        on_change=on_change,
    )


def poll_status(
    name: str,
    *,
    namespace: str,
    client: ApiClient,
    timeout: float,
    poll_seconds: float,
    until: Callable[[AppStatus], bool],
    waiting_for: str,
    on_change: Callable[[AppStatus], None] | None = None,
) -> AppStatus:
    """Read the status of SparkApplication ``name`` until ``until`` holds; return that status.

    Args:
        name: the application's name.
        namespace: its namespace.
        client: a kubernetes ``ApiClient``.
        timeout: seconds to wait in all.
        poll_seconds: seconds between two status reads.
        until: true for the status waited for.
        waiting_for: what ``until`` waits for, in a few words (for messages).
        on_change: called with each new state as it is first seen.

    Returns:
        The first status ``until`` accepts.

    Raises:
        ApplicationFailedError: it ended FAILED first, with the operator's errorMessage.
        ManifestError: it ended COMPLETED without ``until`` holding.
        WaitTimeoutError: ``until`` did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: AppState | None = None
    while True:
        current = status(name, namespace=namespace, client=client)
        if current.state is not last:
            last = current.state
            log.info("%s/%s: %s", namespace, name, current.state.value or "NEW")
            if on_change is not None:
                on_change(current)
        if until(current):
            return current
        if current.state is AppState.FAILED:
            raise ApplicationFailedError(name, current.error_message)
        if current.state.terminal:
            raise ManifestError(
                f"SparkApplication {name!r} ended {current.state.value} with no {waiting_for}"
            )
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"SparkApplication {name!r} is still {current.state.value or 'NEW'} after "
                f"{timeout:g}s, waiting for {waiting_for}; see: icefeed sparkapp status {name} "
                f"--namespace {namespace}"
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
    api_client = ensure_client(client)
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
    text = call_api(
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
    api = kubernetes.client.CustomObjectsApi(ensure_client(client))
    call_api(
        f"delete {kind.value} {name!r} in namespace {namespace!r}",
        api.delete_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        kind.plural,
        name,
    )
    log.info("deleted %s %s/%s", kind.value, namespace, name)
