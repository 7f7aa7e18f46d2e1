"""``icefeed sparkapp ...``: render, validate, submit, status, logs, delete and run-local.

``register`` imports only argparse-level code; the kubernetes client, jsonschema
and friends load when a command runs. Exit codes (:mod:`jobs.exit_codes`): 0
success; 1 the manifest has problems, the application FAILED or timed out, or
spark-submit failed; 2 bad input or a request the cluster refused (printed by the
``icefeed`` entry point).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.exit_codes import ExitCode

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sparkapps.state import AppStatus

EXIT_OK = int(ExitCode.OK)
EXIT_FAILED = int(ExitCode.FAILED)


class _SetAction(argparse.Action):
    """Collects ``--set`` and ``--set-string`` in command-line order as (expression, strings)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        collected = list(getattr(namespace, self.dest, None) or [])
        collected.append((values, option_string == "--set-string"))
        setattr(namespace, self.dest, collected)


def register(subparsers: Any) -> None:
    """Add ``icefeed sparkapp`` and its subcommands to the ``icefeed`` command."""
    parser = subparsers.add_parser(
        "sparkapp",
        help="render, validate, submit and watch SparkApplication manifests; run one locally",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="sparkapp_command", required=True, metavar="ACTION")

    render = sub.add_parser("render", help="apply chart-style values to a manifest; print it")
    render.add_argument("template", help="a manifest file or a shipped name (clean-flights)")
    render.add_argument("-f", "--values", action="append", default=[], help="values YAML file")
    for option, text in (
        ("--set", "as Helm's --set: image.tag=0.2.0,xs[0].a=b,ys={1,2} (ints, booleans typed)"),
        ("--set-string", "as Helm's --set-string: every value a string"),
    ):
        render.add_argument(
            option,
            dest="set_values",
            action=_SetAction,
            default=[],
            metavar="KEY=VAL[,KEY=VAL]",
            help=text,
        )
    render.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="set a manifest field, e.g. spec.executor.instances=4",
    )
    render.add_argument("--namespace", "-n")
    render.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    render.set_defaults(func=_render)

    validate = sub.add_parser("validate", help="check manifests (CRD schema, fields, webhook)")
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML files ('-': stdin)")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(func=_validate)

    submit = sub.add_parser("submit", help="validate, then create the application")
    submit.add_argument("file", metavar="FILE")
    _cluster_options(submit)
    submit.add_argument("--wait", action="store_true", help="follow states until it ends")
    submit.add_argument("--timeout", type=float, default=3600.0, help="--wait limit, seconds")
    submit.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    submit.set_defaults(func=_submit)

    status = sub.add_parser("status", help="the operator's state of an application")
    status.add_argument("target", metavar="NAME|FILE")
    _cluster_options(status)
    status.add_argument("--wait", action="store_true", help="follow states until it ends")
    status.add_argument("--timeout", type=float, default=3600.0)
    status.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    status.set_defaults(func=_status)

    logs = sub.add_parser("logs", help="the driver pod's log")
    logs.add_argument("target", metavar="NAME|FILE")
    _cluster_options(logs)
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.set_defaults(func=_logs)

    delete = sub.add_parser("delete", help="delete an application (or scheduled application)")
    delete.add_argument("target", metavar="NAME|FILE")
    _cluster_options(delete)
    delete.add_argument("--scheduled", action="store_true", help="NAME is scheduled")
    delete.set_defaults(func=_delete)

    local = sub.add_parser(
        "run-local",
        help="run the manifest here with spark-submit --master local[N]",
        description="Translate a SparkApplication into a local spark-submit run. Paths under "
        "/opt/icefeed (the image's copy of the repository) map to this checkout.",
    )
    local.add_argument("file", metavar="FILE")
    local.add_argument("--cores", type=int, help="N in local[N] (default: from the executors)")
    local.add_argument(
        "--map", action="append", default=[], metavar="PREFIX=DIR", help="extra path mapping"
    )
    local.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    local.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    local.add_argument("--timeout", type=float, help="give up after this many seconds")
    local.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    local.set_defaults(func=_run_local)


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", help="default: the manifest's, else 'default'")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    from jobs.errors import ManifestError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ManifestError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _client(args: argparse.Namespace) -> ApiClient:
    from sparkapps.kube import connect

    return connect(kubeconfig=args.kubeconfig, context=args.context)


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


def _print_status(current: AppStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(current.to_dict()), flush=True)
        return
    line = f"{current.namespace}/{current.name}: {current.state.value or 'NEW'}"
    if current.error_message:
        line += f" - {current.error_message}"
    print(line, flush=True)


def _render(args: argparse.Namespace) -> int:
    import yaml

    from jobs.errors import ManifestError
    from sparkapps.manifests import dump_manifest
    from sparkapps.rendering import deep_merge, render
    from sparkapps.set_values import apply_set

    values: dict[str, Any] = {}
    for file in args.values:
        with open(file, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ManifestError(f"--values {file}: must hold a mapping")
        values = deep_merge(values, loaded, null_removes=False)
    for expression, strings in args.set_values:  # in command-line order, as Helm
        apply_set(values, expression, strings=strings)
    for dotted, raw in _pairs(args.override, "--override").items():
        values.setdefault("set", {})[dotted] = yaml.safe_load(raw) if raw else ""
    if args.namespace:
        values["namespace"] = args.namespace
    manifest = render(args.template, values)
    print(json.dumps(manifest, indent=2) if args.json else dump_manifest(manifest), end="\n")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from jobs.errors import ManifestError
    from sparkapps.validation import validate

    report: list[dict[str, Any]] = []
    total = 0
    for file in args.files:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise ManifestError(f"{file} is not valid YAML: {exc}") from exc
        for document in documents:
            problems = validate(document)
            total += len(problems)
            name = (document.get("metadata") or {}).get("name", "?")
            label = f"{file}: {document.get('kind', '?')} {name}"
            report.append({"file": file, "name": name, "problems": [p.to_dict() for p in problems]})
            if not args.json:
                print(f"{label}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
                for problem in problems:
                    print(f"  - {problem}")
    if args.json:
        print(json.dumps(report, indent=2))
    return EXIT_OK if total == 0 else EXIT_FAILED


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


def _submit(args: argparse.Namespace) -> int:
    from sparkapps.kube import checked_body, submit
    from sparkapps.manifests import load_manifest
    from sparkapps.problems import ManifestInvalidError

    manifest = load_manifest(args.file)
    try:
        body = checked_body(manifest, args.namespace)  # before connecting to anything
    except ManifestInvalidError as exc:
        if args.json:
            print(json.dumps({"problems": [p.to_dict() for p in exc.problems]}))
        else:
            print(f"icefeed sparkapp submit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    client = _client(args)
    created = submit(body, client=client)
    if args.json:
        print(json.dumps(created.to_dict()), flush=True)
    else:
        print(f"submitted {body['kind']} {namespace}/{name}", flush=True)
    if args.wait and body.get("kind") == "SparkApplication":
        return _follow(args, str(name), namespace, client)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from sparkapps.crds import Kind
    from sparkapps.kube import get_object, status

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
    current = status(name, namespace=namespace, client=client)
    _print_status(current, args.json)
    return EXIT_FAILED if current.state.value == "FAILED" else EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    from sparkapps.kube import logs

    name, namespace, _ = _target(args)
    text = logs(name, namespace=namespace, client=_client(args), tail_lines=args.tail)
    if args.json:
        print(json.dumps({"name": name, "namespace": namespace, "log": text}))
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    from sparkapps.crds import Kind
    from sparkapps.kube import delete

    name, namespace, manifest = _target(args)
    kind = Kind.SCHEDULED_SPARK_APPLICATION if args.scheduled else Kind.SPARK_APPLICATION
    if manifest is not None:
        kind = Kind.parse(manifest.get("kind"))
    delete(name, namespace=namespace, kind=kind, client=_client(args))
    if args.json:
        print(json.dumps({"deleted": name, "namespace": namespace, "kind": kind.value}))
    else:
        print(f"deleted {kind.value} {namespace}/{name}")
    return EXIT_OK


def _run_local(args: argparse.Namespace) -> int:
    from sparkapps.local import default_path_map, describe, plan_local_run, run_local
    from sparkapps.manifests import load_manifest

    path_map = {**default_path_map(), **_pairs(args.map, "--map")}
    plan = plan_local_run(
        load_manifest(args.file),
        path_map=path_map,
        cores=args.cores,
        extra_conf=_pairs(args.conf, "--conf"),
        extra_env=_pairs(args.env, "--env"),
    )
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print(describe(plan))
        return EXIT_OK
    result = run_local(plan, timeout=args.timeout)
    if result.returncode != 0:
        print(
            f"icefeed sparkapp run-local: spark-submit exited {result.returncode}", file=sys.stderr
        )
        return EXIT_FAILED
    return EXIT_OK
