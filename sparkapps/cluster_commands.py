"""The ``icefeed sparkapp`` actions that talk to a cluster: submit, status, list, events, logs,
trigger, delete.

Each takes the parsed arguments (:mod:`sparkapps.commands` declares them) and
returns an exit code (:mod:`jobs.exit_codes`); errors propagate to the ``icefeed``
entry point, which prints them and picks the code. The kubernetes client loads
when an action runs, never at registration.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.exit_codes import ExitCode

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sparkapps.crds import CrdSource
    from sparkapps.state import AppStatus
    from sparkapps.validation import SkippedCheck

EXIT_OK = int(ExitCode.OK)
EXIT_FAILED = int(ExitCode.FAILED)


def _client(args: argparse.Namespace) -> ApiClient:
    from sparkapps.kube import connect

    return connect(kubeconfig=args.kubeconfig, context=args.context)


def _crd_source(args: argparse.Namespace, client: Any) -> CrdSource:
    """``--crds``, else ``$ICEFEED_CRDS_DIR``, else the cluster ``client()`` connects to."""
    from sparkapps.crds import crd_source

    return crd_source(getattr(args, "crds", None), client_factory=client)


def report_skipped(command: str, skipped: SkippedCheck) -> None:
    """Print a check validation skipped for want of a CRD schema, on stderr."""
    print(f"icefeed sparkapp {command}: warning: {skipped}", file=sys.stderr)


def _target(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """Return (name, namespace, manifest or None) for a NAME or FILE argument."""
    from sparkapps.kube import DEFAULT_NAMESPACE, resolve_namespace
    from sparkapps.manifests import load_manifest

    target = args.target
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        manifest = load_manifest(target)
        name = str((manifest.get("metadata") or {}).get("name", ""))
        return name, resolve_namespace(manifest, args.namespace), manifest
    return target, args.namespace or DEFAULT_NAMESPACE, None


def _kind(args: argparse.Namespace, manifest: dict[str, Any] | None) -> Any:
    from sparkapps.crds import Kind

    if manifest is not None:
        return Kind.parse(manifest.get("kind"))
    scheduled = getattr(args, "scheduled", False)
    return Kind.SCHEDULED_SPARK_APPLICATION if scheduled else Kind.SPARK_APPLICATION


def _print_status(current: AppStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(current.to_dict()), flush=True)
        return
    line = f"{current.namespace}/{current.name}: {current.state.value or 'NEW'}"
    if current.error_message:
        line += f" - {current.error_message}"
    print(line, flush=True)


def _follow(args: argparse.Namespace, name: str, namespace: str, client: ApiClient) -> int:
    from sparkapps.kube import wait
    from sparkapps.problems import ApplicationFailedError

    try:
        wait(
            name,
            namespace=namespace,
            client=client,
            timeout=args.timeout,
            poll_seconds=args.poll,
            on_change=lambda s: _print_status(s, args.json),
        )
    except ApplicationFailedError as exc:
        print(f"icefeed sparkapp: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def submit(args: argparse.Namespace) -> int:
    """``submit FILE``: validate, dry-run on the server, create (or --update/--replace)."""
    from sparkapps.kube import OnExisting, SubmitAction, checked_body, submit_body
    from sparkapps.manifests import load_manifest
    from sparkapps.problems import ManifestInvalidError

    manifest = load_manifest(args.file)
    client = functools.cache(lambda: _client(args))  # connects only if needed
    on_existing = OnExisting(args.on_existing)
    try:  # a named CRD folder validates before anything connects
        body = checked_body(
            manifest,
            args.namespace,
            crds=_crd_source(args, client),
            on_skipped=lambda s: report_skipped("submit", s),
        )
    except ManifestInvalidError as exc:
        if args.json:
            print(json.dumps({"problems": [p.to_dict() for p in exc.problems]}))
        else:
            print(f"icefeed sparkapp submit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    action, written = submit_body(body, client=client(), on_existing=on_existing)
    if args.json:
        print(json.dumps({**written.to_dict(), "action": action.value}), flush=True)
    else:
        verb = "submitted" if action is SubmitAction.CREATED else action.value
        print(f"{verb} {body['kind']} {namespace}/{name}", flush=True)
    if args.wait and body.get("kind") == "SparkApplication":
        return _follow(args, str(name), namespace, client())
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    """``status NAME|FILE``: the operator's state; 1 when FAILED."""
    from sparkapps.crds import Kind
    from sparkapps.kube import get_object
    from sparkapps.kube import status as app_status

    name, namespace, manifest = _target(args)
    client = _client(args)
    if manifest is not None and manifest.get("kind") == Kind.SCHEDULED_SPARK_APPLICATION.value:
        obj = get_object(
            name, namespace=namespace, kind=Kind.SCHEDULED_SPARK_APPLICATION, client=client
        )
        print(json.dumps(obj.get("status") or {}, indent=None if args.json else 2))
        return EXIT_OK
    if args.wait:
        return _follow(args, name, namespace, client)
    current = app_status(name, namespace=namespace, client=client)
    _print_status(current, args.json)
    return EXIT_FAILED if current.state.value == "FAILED" else EXIT_OK


def _row(obj: dict[str, Any], scheduled: bool) -> dict[str, str]:
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    row = {"namespace": str(metadata.get("namespace", "")), "name": str(metadata.get("name"))}
    if scheduled:
        spec = obj.get("spec") or {}
        row["schedule"] = str(spec.get("schedule", ""))
        row["suspend"] = str(bool(spec.get("suspend"))).lower()
        row["lastRun"] = str(status.get("lastRun") or "-")
        row["lastRunName"] = str(status.get("lastRunName") or "-")
        row["state"] = str(status.get("scheduleState") or "NEW")
    else:
        row["state"] = str((status.get("applicationState") or {}).get("state") or "NEW")
        row["driverPod"] = str((status.get("driverInfo") or {}).get("podName") or "-")
    return row


def _print_table(rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    for line in [dict(zip(headers, [h.upper() for h in headers], strict=True)), *rows]:
        print("  ".join(line[h].ljust(widths[h]) for h in headers).rstrip())


def list_apps(args: argparse.Namespace) -> int:
    """``list``: the (scheduled) applications of a namespace, or of all (-A)."""
    from sparkapps.crds import Kind
    from sparkapps.kube import DEFAULT_NAMESPACE
    from sparkapps.observe import list_objects

    kind = Kind.SCHEDULED_SPARK_APPLICATION if args.scheduled else Kind.SPARK_APPLICATION
    namespace = None if args.all_namespaces else (args.namespace or DEFAULT_NAMESPACE)
    objects = list_objects(
        namespace=namespace, kind=kind, selector=args.selector, client=_client(args)
    )
    rows = [_row(obj, args.scheduled) for obj in objects]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        where = f"namespace {namespace}" if namespace else "any namespace"
        print(f"no {kind.value} in {where}", file=sys.stderr)
    else:
        _print_table(rows)
    return EXIT_OK


def events(args: argparse.Namespace) -> int:
    """``events NAME|FILE``: what the operator and the kubelet recorded, oldest first."""
    from sparkapps.observe import events as app_events

    name, namespace, manifest = _target(args)
    found = app_events(name, namespace=namespace, kind=_kind(args, manifest), client=_client(args))
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2))
        return EXIT_OK
    rows = [
        {
            "time": e.time,
            "type": e.type,
            "reason": e.reason,
            "object": e.object,
            "message": e.message + (f" (x{e.count})" if e.count > 1 else ""),
        }
        for e in found
    ]
    if not rows:
        print(f"no events for {name} in namespace {namespace}", file=sys.stderr)
    _print_table(rows)
    return EXIT_OK


def logs(args: argparse.Namespace) -> int:
    """``logs NAME|FILE``: the driver's log; ``--follow`` streams it until the driver ends."""
    from sparkapps.kube import logs as driver_logs
    from sparkapps.observe import follow_logs

    name, namespace, _ = _target(args)
    client = _client(args)
    if args.follow:
        for piece in follow_logs(
            name, namespace=namespace, client=client, timeout=args.timeout, poll_seconds=args.poll
        ):
            sys.stdout.write(piece)
            sys.stdout.flush()
        return EXIT_OK
    text = driver_logs(name, namespace=namespace, client=client, tail_lines=args.tail)
    if args.json:
        print(json.dumps({"name": name, "namespace": namespace, "log": text}))
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT_OK


def trigger(args: argparse.Namespace) -> int:
    """``trigger NAME|FILE``: run a ScheduledSparkApplication now (``--wait`` follows it)."""
    from sparkapps.schedule import trigger as trigger_run

    name, namespace, _ = _target(args)
    client = _client(args)
    run = trigger_run(
        name,
        namespace=namespace,
        client=client,
        crds=_crd_source(args, lambda: client),
        on_skipped=lambda s: report_skipped("trigger", s),
    )
    if args.json:
        print(json.dumps({**run.to_dict(), "scheduledApplication": name}), flush=True)
    else:
        print(f"triggered SparkApplication {namespace}/{run.name} from {name}", flush=True)
    if args.wait:
        return _follow(args, run.name, namespace, client)
    return EXIT_OK


def delete(args: argparse.Namespace) -> int:
    """``delete NAME|FILE``: delete an application (or, ``--scheduled``, a schedule)."""
    from sparkapps.kube import delete as delete_object

    name, namespace, manifest = _target(args)
    kind = _kind(args, manifest)
    delete_object(name, namespace=namespace, kind=kind, client=_client(args))
    if args.json:
        print(json.dumps({"deleted": name, "namespace": namespace, "kind": kind.value}))
    else:
        print(f"deleted {kind.value} {namespace}/{name}")
    return EXIT_OK
