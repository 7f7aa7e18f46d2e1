"""``icefeed sparkapp ...``: the subcommands, and the ones that need no cluster.

render, validate and run-local run here; submit, status, list, events, logs,
trigger and delete talk to a cluster (their code: sparkapps/cluster_commands.py).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.exit_codes import ExitCode

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

    validate = sub.add_parser(
        "validate",
        help="check manifests (CRD schema, fields, webhook rules); says which checks it skipped",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML files ('-': stdin)")
    validate.add_argument("--json", action="store_true")
    _crds_option(validate)
    validate.add_argument("--kubeconfig", help="read the CRDs from this cluster")
    validate.add_argument("--context", help="kubeconfig context")
    validate.set_defaults(func=_validate)

    submit = sub.add_parser(
        "submit", help="validate, dry-run on the server (strict fields), then create"
    )
    submit.add_argument("file", metavar="FILE")
    _cluster_options(submit)
    _crds_option(submit)
    existing = submit.add_mutually_exclusive_group()
    for option, text in (
        ("update", "if it exists, put this spec into it (the operator re-runs a changed spec)"),
        ("replace", "if it exists, delete it, wait until it is gone, and create it anew"),
    ):
        existing.add_argument(
            f"--{option}", dest="on_existing", action="store_const", const=option, help=text
        )
    submit.set_defaults(on_existing="fail")
    _wait_options(submit, "follow states until it ends")
    submit.set_defaults(func=_cluster("submit"))

    status = sub.add_parser("status", help="the operator's state of an application")
    status.add_argument("target", metavar="NAME|FILE")
    _cluster_options(status)
    _wait_options(status, "follow states until it ends")
    status.set_defaults(func=_cluster("status"))

    listing = sub.add_parser("list", help="the applications in a namespace, with their state")
    _cluster_options(listing)
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    listing.add_argument("-l", "--selector", help="label selector, as kubectl's -l")
    listing.add_argument("--scheduled", action="store_true", help="list ScheduledSparkApplications")
    listing.set_defaults(func=_cluster("list_apps"))

    events = sub.add_parser("events", help="the events of an application and its driver pod")
    events.add_argument("target", metavar="NAME|FILE")
    _cluster_options(events)
    events.add_argument("--scheduled", action="store_true", help="NAME is scheduled")
    events.set_defaults(func=_cluster("events"))

    logs = sub.add_parser("logs", help="the driver pod's log")
    logs.add_argument("target", metavar="NAME|FILE")
    _cluster_options(logs)
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="stream the log until the driver ends"
    )
    logs.add_argument(
        "--timeout", type=float, default=600.0, help="--follow: seconds to wait for the driver"
    )
    logs.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    logs.set_defaults(func=_cluster("logs"))

    trigger = sub.add_parser(
        "trigger",
        help="run a ScheduledSparkApplication now (a SparkApplication from its template)",
    )
    trigger.add_argument("target", metavar="NAME|FILE")
    _cluster_options(trigger)
    _crds_option(trigger)
    _wait_options(trigger, "follow the run's states until it ends")
    trigger.set_defaults(func=_cluster("trigger"))

    delete = sub.add_parser("delete", help="delete an application (or scheduled application)")
    delete.add_argument("target", metavar="NAME|FILE")
    _cluster_options(delete)
    delete.add_argument("--scheduled", action="store_true", help="NAME is scheduled")
    delete.set_defaults(func=_cluster("delete"))

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


def _crds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crds",
        metavar="DIR",
        help="the Spark operator's CRD folder (default: $ICEFEED_CRDS_DIR, else the cluster's)",
    )


def _wait_options(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--wait", action="store_true", help=text)
    parser.add_argument("--timeout", type=float, default=3600.0, help="--wait limit, seconds")
    parser.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)


def _cluster(action: str) -> Callable[[argparse.Namespace], int]:
    """Return a handler that runs ``sparkapps.cluster_commands.<action>`` (imported then)."""

    def run(args: argparse.Namespace) -> int:
        from sparkapps import cluster_commands

        handler: Callable[[argparse.Namespace], int] = getattr(cluster_commands, action)
        return handler(args)

    return run


def _pairs(items: list[str], option: str) -> dict[str, str]:
    from jobs.errors import ManifestError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ManifestError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


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
    import functools

    import yaml

    from jobs.errors import ManifestError
    from sparkapps.cluster_commands import report_skipped
    from sparkapps.crds import crd_source
    from sparkapps.kube import connect
    from sparkapps.validation import validation_report

    # --crds, else $ICEFEED_CRDS_DIR, else the cluster of the kubeconfig if one answers
    client = functools.cache(lambda: connect(kubeconfig=args.kubeconfig, context=args.context))
    crds = crd_source(args.crds, client_factory=client)
    report: list[dict[str, Any]] = []
    total = 0
    for file in args.files:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise ManifestError(f"{file} is not valid YAML: {exc}") from exc
        for document in documents:
            found = validation_report(document, crds=crds)
            total += len(found.problems)
            name = (document.get("metadata") or {}).get("name", "?")
            label = f"{file}: {document.get('kind', '?')} {name}"
            report.append(
                {
                    "file": file,
                    "name": name,
                    "problems": [p.to_dict() for p in found.problems],
                    "skipped": [s.to_dict() for s in found.skipped],
                }
            )
            if args.json:
                continue
            verdict = "ok" if found.ok else f"{len(found.problems)} problem(s)"
            print(f"{label}: {verdict}" + (" (some checks skipped)" if found.skipped else ""))
            for problem in found.problems:
                print(f"  - {problem}")
            for skipped in found.skipped:
                report_skipped("validate", skipped)
    if args.json:
        print(json.dumps(report, indent=2))
    return EXIT_OK if total == 0 else EXIT_FAILED


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
